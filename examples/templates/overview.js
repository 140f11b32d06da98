const VMID=document.getElementById('live').dataset.vmid;
function setBtn(id,a){const b=document.getElementById(id);if(!b)return;b.disabled=!a.allowed;b.title=a.allowed?'':(a.reason||'')}
async function refresh(){
  try{const r=await fetch('/s/'+VMID+'/live.json');if(r.status===401){location.href='/login?err=Your+session+has+expired.+Please+log+in+again.';return}if(!r.ok){document.getElementById('live-error').textContent='Something went wrong: the live status cannot be loaded.';return}
  const d=await r.json();document.getElementById('live-error').textContent='';
  const st=document.getElementById('status');st.textContent=d.status+(d.lock?' (locked: '+d.lock+')':'');st.className='status-'+d.status;
  document.getElementById('uptime').textContent=d.uptime;
  document.getElementById('cpu').textContent=d.cpu_percent.toFixed(1)+'% of '+d.cores+' cores';
  document.getElementById('cpubar').style.width=d.cpu_percent+'%';
  document.getElementById('ram').textContent=(d.ram_used/1048576).toFixed(0)+' / '+(d.ram_total/1048576).toFixed(0)+' MiB';
  document.getElementById('rambar').style.width=d.ram_percent+'%';
  const p=d.access.power_control, c=d.access.console;
  const running=d.status==='running';
  setBtn('btn-start',{allowed:p.allowed&&!running,reason:running?'already running':p.reason});
  for(const id of ['btn-stop','btn-shutdown','btn-reboot','btn-reset'])setBtn(id,{allowed:p.allowed&&running,reason:running?p.reason:'the vm is not running'});
  setBtn('btn-console',c);
  document.getElementById('updated').textContent=new Date().toLocaleTimeString();
  }catch(e){document.getElementById('live-error').textContent='Something went wrong: '+e}
}
refresh();setInterval(refresh,7000);
async function openConsole(){
  const r=await fetch('/s/'+VMID+'/console',{method:'POST',headers:{'X-CSRF-Token':csrf()}});
  const d=await r.json(); if(!r.ok){alert(d.error);return}
  window.open(d.url,'_blank');
}
