//! Reverse DNS (PTR) through Cloudflare, HestiaCP, PowerDNS or a support-ticket fallback
