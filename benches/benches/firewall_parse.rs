//! Parse time of a 10,000-line guest `.fw` file.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pve_vps_firewall::{FileKind, parse};

fn file(lines: usize) -> String {
    let mut s = String::from(
        "[OPTIONS]\nenable: 1\n\n[IPSET office]\n10.0.0.0/8\n!10.9.0.0/16 # guests\n\n[RULES]\n",
    );
    let mut i = 0u32;
    while s.lines().count() < lines {
        i += 1;
        let r = match i % 5 {
            0 => format!("IN SSH(ACCEPT) -source +office -log nolog # admins {i}"),
            1 => format!(
                "IN ACCEPT -source 10.{}.{}.0/24 -p tcp -dport {},{}:{}",
                i % 256,
                (i / 256) % 256,
                i % 60000,
                1000,
                2000
            ),
            2 => format!("|OUT DROP -dest 192.0.2.{} -p udp -sport 53", i % 256),
            3 => format!(
                "IN REJECT -source 2001:db8::{:x} -p icmpv6 -icmp-type echo-request",
                i
            ),
            _ => format!("IN DROP -p tcp -dport {} # rule {i}", 1 + i % 65000),
        };
        s.push_str(&r);
        s.push('\n');
    }
    s
}

fn bench(c: &mut Criterion) {
    let text = file(10_000);
    assert_eq!(
        parse(&text, FileKind::Guest)
            .map(|f| f.rules.len())
            .unwrap_or(0)
            + 8,
        10_000
    );
    let mut group = c.benchmark_group("firewall_parse");
    group.sample_size(20);
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("guest_fw_10000_lines", |b| {
        b.iter(|| black_box(parse(black_box(&text), FileKind::Guest)))
    });
    let file = parse(&text, FileKind::Guest).unwrap();
    group.bench_function("print_10000_lines", |b| {
        b.iter(|| black_box(file.to_string()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
