function csrf(){return document.querySelector('meta[name=csrf]').content}
async function pollTask(vmid, upid){
  const box=document.getElementById('task');if(!box)return;
  for(;;){
    const r=await fetch('/s/'+vmid+'/task?upid='+encodeURIComponent(upid));
    if(r.status===401){location.href='/login?err=Your+session+has+expired.+Please+log+in+again.';return}
    if(!r.ok){box.textContent='task status unavailable';return}
    const t=await r.json();
    box.querySelector('.bar>div').style.width=(t.running?(t.percent!=null?t.percent:Math.min(95,(t.lines.length*15)+10)):100)+'%';
    box.querySelector('.t').textContent=(t.running?'Running: ':'Finished: ')+t.kind+(t.running?'':' ('+t.exitstatus+')');
    box.querySelector('.l').textContent=t.lines.join('\n');
    if(!t.running){box.className='card '+(t.exitstatus==='OK'?'ok':'err');
      setTimeout(()=>{const u=new URL(location.href);u.searchParams.delete('task');location.replace(u.href)},1200);return}
    await new Promise(res=>setTimeout(res,600));
  }
}
document.addEventListener('DOMContentLoaded',()=>{const t=document.getElementById('task');if(t&&t.dataset.upid)pollTask(t.dataset.vmid,t.dataset.upid)});
