//! The VNC websocket: validates the VNC ticket, then speaks enough RFB 3.8 for noVNC to show a
//! screen (security type None, a small framebuffer, raw-encoded updates).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State as AxState};
use axum::response::Response;

use super::{ApiError, App, authenticate};
use crate::model::{Outcome, now_ms};

/// Framebuffer size served to VNC clients.
pub(crate) const FB_W: u16 = 320;
/// Framebuffer height.
pub(crate) const FB_H: u16 = 200;

pub(super) async fn ws_handler(
    AxState(app): AxState<Arc<App>>,
    Path(path): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
    headers: http::HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let now = now_ms();
    let ident = match authenticate(&app, &headers, false, now).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    // FACT (pve-http-server src/PVE/APIServer/AnyEvent.pm, authenticate_and_handle_request):
    // a websocket upgrade is authenticated like any request (ticket cookie or API token) and
    // proxied only when the vncwebsocket handler answers 200; that handler (qemu-server
    // src/PVE/API2/Qemu.pm) verifies the VNC ticket against the caller's auth id, so the
    // ticket works only for whoever asked vncproxy for it (a ticket session's ticket is
    // refused to an API token and the other way round).
    let vmid: u32 = path.get("vmid").and_then(|v| v.parse().ok()).unwrap_or(0);
    let raw_port = q.get("port").cloned().unwrap_or_default();
    // FACT (qemu-server src/PVE/API2/Qemu.pm, vncwebsocket): `port` is an integer from 5900
    // to 5999, checked as a parameter (400) before the ticket.
    let port: u16 = match raw_port.parse::<i64>() {
        Ok(p) if (5900..=5999).contains(&p) => p as u16,
        Ok(p) if p < 5900 => {
            return ApiError::param("port", "value must have a minimum value of 5900")
                .into_response();
        }
        Ok(_) => {
            return ApiError::param("port", "value must have a maximum value of 5999")
                .into_response();
        }
        Err(_) => {
            return ApiError::param(
                "port",
                &format!("type check ('integer') failed - got '{raw_port}'"),
            )
            .into_response();
        }
    };
    let ticket = q.get("vncticket").cloned().unwrap_or_default();
    let found = {
        let mut st = app.lock(now);
        let found = st
            .vnc_tickets
            .get(&ticket)
            .filter(|t| {
                t.vmid == vmid && t.port == port && t.expires_ms >= now && t.authid == ident.id
            })
            .map(|t| t.upid.clone());
        if found.is_some() {
            st.vnc_tickets.remove(&ticket);
        }
        let running = st.vms.get(&vmid).is_some_and(|vm| vm.running());
        found.map(|u| (u, running))
    };
    let Some((upid, running)) = found else {
        // FACT (pve-common src/PVE/Ticket.pm, verify_rsa_ticket): "permission denied -
        // invalid $prefix ticket" with HTTP 401, delayed 3 s like every 401.
        if !app.login_delay.is_zero() {
            tokio::time::sleep(app.login_delay).await;
        }
        return ApiError::status(401, "permission denied - invalid PVEVNC ticket").into_response();
    };
    let Ok(ws) = ws else {
        return ApiError::status(400, "websocket upgrade expected").into_response();
    };
    app.lock(now).hold_task(&upid);
    ws.protocols(["binary"])
        .on_upgrade(move |socket| async move {
            // FACT (qemu-server src/PVE/API2/Qemu.pm, vncproxy): the worker runs `qm vncproxy`
            // for the connected client and ends when it goes away; for a VM that does not run,
            // `qm vncproxy` fails and the task dies with "Failed to run vncproxy.".
            let outcome = if running {
                rfb_session(socket, vmid).await;
                Outcome::Ok
            } else {
                drop(socket);
                Outcome::Error("Failed to run vncproxy.".into())
            };
            let now = now_ms();
            app.lock(now).end_task(&upid, now, outcome);
        })
}

/// The client's pixel format (what we must encode in).
#[derive(Debug, Clone, Copy)]
struct PixelFormat {
    bpp: u8,
    big_endian: bool,
    rmax: u16,
    gmax: u16,
    bmax: u16,
    rshift: u8,
    gshift: u8,
    bshift: u8,
}

impl PixelFormat {
    fn default_fmt() -> Self {
        Self {
            bpp: 32,
            big_endian: false,
            rmax: 255,
            gmax: 255,
            bmax: 255,
            rshift: 16,
            gshift: 8,
            bshift: 0,
        }
    }
    fn bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = self.bpp;
        b[1] = 24;
        b[2] = u8::from(self.big_endian);
        b[3] = 1;
        b[4..6].copy_from_slice(&self.rmax.to_be_bytes());
        b[6..8].copy_from_slice(&self.gmax.to_be_bytes());
        b[8..10].copy_from_slice(&self.bmax.to_be_bytes());
        b[10] = self.rshift;
        b[11] = self.gshift;
        b[12] = self.bshift;
        b
    }
    fn parse(b: &[u8]) -> Self {
        Self {
            bpp: b[0],
            big_endian: b[2] != 0,
            rmax: u16::from_be_bytes([b[4], b[5]]),
            gmax: u16::from_be_bytes([b[6], b[7]]),
            bmax: u16::from_be_bytes([b[8], b[9]]),
            rshift: b[10],
            gshift: b[11],
            bshift: b[12],
        }
    }
    fn encode(&self, r: u8, g: u8, b: u8, out: &mut Vec<u8>) {
        let scale = |c: u8, max: u16| c as u32 * max as u32 / 255;
        let px = (scale(r, self.rmax) << self.rshift)
            | (scale(g, self.gmax) << self.gshift)
            | (scale(b, self.bmax) << self.bshift);
        match self.bpp {
            8 => out.push(px as u8),
            16 => {
                let v = px as u16;
                out.extend_from_slice(&if self.big_endian {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                });
            }
            _ => out.extend_from_slice(&if self.big_endian {
                px.to_be_bytes()
            } else {
                px.to_le_bytes()
            }),
        }
    }
}

/// A simple non-blank picture: a gradient with a frame and a per-VM colour band.
pub(crate) fn pixel(vmid: u32, x: u16, y: u16) -> (u8, u8, u8) {
    if x < 4 || y < 4 || x >= FB_W - 4 || y >= FB_H - 4 {
        return (230, 112, 0); // Proxmox orange frame
    }
    if (90..110).contains(&y) {
        let hue = (vmid * 37 % 255) as u8;
        return (hue, 255 - hue, 128);
    }
    (
        (x as u32 * 255 / FB_W as u32) as u8,
        (y as u32 * 255 / FB_H as u32) as u8,
        96,
    )
}

fn framebuffer_update(fmt: &PixelFormat, vmid: u32, x: u16, y: u16, w: u16, h: u16) -> Vec<u8> {
    let x = x.min(FB_W);
    let y = y.min(FB_H);
    let w = w.min(FB_W - x);
    let h = h.min(FB_H - y);
    let mut out = Vec::with_capacity(16 + w as usize * h as usize * 4);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&1u16.to_be_bytes());
    for v in [x, y, w, h] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&0i32.to_be_bytes()); // raw encoding
    for yy in y..y + h {
        for xx in x..x + w {
            let (r, g, b) = pixel(vmid, xx, yy);
            fmt.encode(r, g, b, &mut out);
        }
    }
    out
}

async fn send(ws: &mut WebSocket, data: Vec<u8>) -> bool {
    ws.send(Message::Binary(data.into())).await.is_ok()
}

/// Run the RFB 3.8 server side over a websocket until the client goes away.
async fn rfb_session(mut ws: WebSocket, vmid: u32) {
    let mut buf: Vec<u8> = Vec::new();
    let mut stage = 0u8; // 0: version, 1: security choice, 2: client init, 3: messages
    let mut fmt = PixelFormat::default_fmt();
    if !send(&mut ws, b"RFB 003.008\n".to_vec()).await {
        return;
    }
    while let Some(Ok(msg)) = ws.recv().await {
        match msg {
            Message::Binary(b) => buf.extend_from_slice(&b),
            Message::Text(t) => buf.extend_from_slice(t.as_bytes()),
            Message::Close(_) => return,
            _ => continue,
        }
        loop {
            let consumed = match stage {
                0 if buf.len() >= 12 => {
                    stage = 1;
                    // security types: one type, None
                    if !send(&mut ws, vec![1, 1]).await {
                        return;
                    }
                    12
                }
                1 if !buf.is_empty() => {
                    stage = 2;
                    if !send(&mut ws, 0u32.to_be_bytes().to_vec()).await {
                        return;
                    }
                    1
                }
                2 if !buf.is_empty() => {
                    stage = 3;
                    let name = format!("VM {vmid}");
                    let mut init = Vec::new();
                    init.extend_from_slice(&FB_W.to_be_bytes());
                    init.extend_from_slice(&FB_H.to_be_bytes());
                    init.extend_from_slice(&fmt.bytes());
                    init.extend_from_slice(&(name.len() as u32).to_be_bytes());
                    init.extend_from_slice(name.as_bytes());
                    if !send(&mut ws, init).await {
                        return;
                    }
                    1
                }
                3 if !buf.is_empty() => match buf[0] {
                    0 if buf.len() >= 20 => {
                        fmt = PixelFormat::parse(&buf[4..20]);
                        20
                    }
                    2 if buf.len() >= 4 => {
                        let n = u16::from_be_bytes([buf[2], buf[3]]) as usize;
                        if buf.len() >= 4 + 4 * n { 4 + 4 * n } else { 0 }
                    }
                    3 if buf.len() >= 10 => {
                        let g = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]);
                        let upd = framebuffer_update(&fmt, vmid, g(2), g(4), g(6), g(8));
                        if !send(&mut ws, upd).await {
                            return;
                        }
                        10
                    }
                    4 if buf.len() >= 8 => 8,
                    5 if buf.len() >= 6 => 6,
                    6 if buf.len() >= 8 => {
                        let n = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
                        if buf.len() >= 8 + n { 8 + n } else { 0 }
                    }
                    0 | 2..=6 => 0,
                    _ => return, // unknown message: give up like a real server would
                },
                _ => 0,
            };
            if consumed == 0 {
                break;
            }
            buf.drain(..consumed);
        }
    }
}
