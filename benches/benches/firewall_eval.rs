//! Decisions per second of the reference and the compiled firewall evaluator on one guest's
//! IN chain with 10, 100, 1,000 and 10,000 rules.
//!
//! Two groups run the same benches: `firewall_eval` measures wall time, `firewall_eval_cpu`
//! measures the benchmark thread's CPU time (`/proc/thread-self/schedstat`), which gives a
//! per-core figure on a shared, busy machine.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::IpAddr;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pve_vps_firewall::{
    ChainId, CompiledNode, Evaluator, FileKind, Guest, GuestKind, Nic, Node, Packet, Reference,
    parse,
};

/// Small deterministic generator (no extra dependency).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

/// A guest file with `n` rules: sources from 10.0.0.0/8 (/24 and /32), tcp/udp with single
/// ports, lists and ranges, some macros, a few IP set references; policy DROP.
fn rules_file(n: usize, rng: &mut Lcg) -> String {
    let mut s = String::from(
        "[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[IPSET admins]\n10.9.0.0/16\n!10.9.9.0/24\n\n[RULES]\n",
    );
    for _ in 0..n {
        let action = ["ACCEPT", "DROP", "REJECT"][rng.below(3) as usize];
        let src = match rng.below(4) {
            0 => format!(" -source 10.{}.{}.0/24", rng.below(256), rng.below(256)),
            1 => format!(
                " -source 10.{}.{}.{}",
                rng.below(256),
                rng.below(256),
                rng.below(256)
            ),
            2 => " -source +admins".to_string(),
            _ => String::new(),
        };
        let rule = match rng.below(5) {
            0 => format!(
                "IN {}({action}){src}",
                ["SSH", "HTTP", "DNS", "SMTP"][rng.below(4) as usize]
            ),
            1 => format!(
                "IN {action}{src} -p tcp -dport {}:{}",
                1000 + rng.below(1000),
                3000 + rng.below(1000)
            ),
            2 => format!(
                "IN {action}{src} -p udp -dport {},{}",
                rng.below(65535),
                rng.below(65535)
            ),
            _ => format!("IN {action}{src} -p tcp -dport {}", 1 + rng.below(65534)),
        };
        s.push_str(&rule);
        s.push('\n');
    }
    s
}

fn node(n: usize) -> Node {
    let mut rng = Lcg(n as u64);
    let mut node = Node::new();
    node.cluster = parse("[OPTIONS]\nenable: 1\n", FileKind::Cluster).unwrap();
    let guest = Guest {
        vmid: 100,
        kind: GuestKind::Vm,
        firewall: parse(&rules_file(n, &mut rng), FileKind::Guest).unwrap(),
        nics: vec![Nic {
            index: 0,
            mac: "52:54:00:00:01:00".parse().unwrap(),
            bridge: "vmbr0".into(),
            firewall: true,
            ips: vec!["192.0.2.100".parse().unwrap()],
        }],
    };
    node.guests = BTreeMap::from([(100, guest)]);
    node
}

fn packets(count: usize) -> Vec<Packet> {
    let mut rng = Lcg(7);
    let dest: IpAddr = "192.0.2.100".parse().unwrap();
    (0..count)
        .map(|_| {
            let source = IpAddr::from([
                10,
                rng.below(256) as u8,
                rng.below(256) as u8,
                rng.below(256) as u8,
            ]);
            let port = match rng.below(3) {
                0 => [22, 25, 53, 80, 443][rng.below(5) as usize],
                1 => 1000 + rng.below(3000) as u16,
                _ => rng.below(65535) as u16,
            };
            let mut p = if rng.below(4) == 0 {
                Packet::udp(source, dest, 40000, port)
            } else {
                Packet::tcp(source, dest, port)
            };
            p.iface = Some("net0".parse().unwrap());
            p
        })
        .collect()
}

/// CPU time of the calling thread, in nanoseconds.
struct ThreadCpuTime;

fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

struct NsFormatter;

impl ValueFormatter for NsFormatter {
    fn scale_values(&self, _typical: f64, _values: &mut [f64]) -> &'static str {
        "ns (cpu)"
    }
    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per = match throughput {
            Throughput::Elements(n) | Throughput::ElementsAndBytes { elements: n, .. } => *n as f64,
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => *n as f64,
            Throughput::Bits(n) => *n as f64,
        };
        for v in values {
            *v = per * 1e9 / *v / 1e6;
        }
        "Melem/s (cpu)"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, i: u64) -> u64 {
        thread_cpu_ns().saturating_sub(i)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &NsFormatter
    }
}

fn bench(c: &mut Criterion) {
    run(c, "firewall_eval");
}

fn bench_cpu(c: &mut Criterion<ThreadCpuTime>) {
    run(c, "firewall_eval_cpu");
}

fn run<M: Measurement>(c: &mut Criterion<M>, name: &str) {
    let chain = ChainId::GuestIn { vmid: 100, nic: 0 };
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    for n in [10usize, 100, 1_000, 10_000] {
        let node = node(n);
        let compiled = CompiledNode::compile(&node);
        let fast = compiled.chain(chain).unwrap();
        // Fewer packets for the slow reference on big rule sets keeps the run short.
        let ref_pkts = packets(if n >= 10_000 {
            64
        } else if n >= 1_000 {
            256
        } else {
            1024
        });
        let pkts = packets(4096);
        group.throughput(Throughput::Elements(ref_pkts.len() as u64));
        group.bench_with_input(BenchmarkId::new("reference", n), &ref_pkts, |b, pkts| {
            let r = Reference(&node);
            b.iter(|| {
                for p in pkts {
                    black_box(r.evaluate_chain(chain, black_box(p)));
                }
            })
        });
        group.throughput(Throughput::Elements(pkts.len() as u64));
        group.bench_with_input(BenchmarkId::new("compiled_decide", n), &pkts, |b, pkts| {
            b.iter(|| {
                for p in pkts {
                    black_box(fast.decide(black_box(p)));
                }
            })
        });
        group.bench_with_input(BenchmarkId::new("compiled_verdict", n), &pkts, |b, pkts| {
            b.iter(|| {
                for p in pkts {
                    black_box(fast.verdict(black_box(p)));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = bench_cpu
}
criterion_main!(benches, cpu);
