//! WebSocket echo endpoints: ComfyUI's `/ws` (greets with a `status`
//! message first, as ComfyUI does) and DashScope's `/api-ws/v1/inference`.
//! A hand-written RFC 6455 server: handshake, then every data frame is
//! sent back with its opcode and FIN bit, pings are answered, and a close
//! is echoed before the connection closes.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::http::Request;
use super::State;

/// Largest frame payload echoed; larger frames get close code 1009.
const MAX_PAYLOAD: u64 = 16 * 1024 * 1024;
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Whether `req` opens one of the WebSocket endpoints.
pub fn is_upgrade(req: &Request) -> bool {
    let path_ok = req.path == "/ws" || req.path.ends_with("/api-ws/v1/inference");
    let upgrade = req.header("upgrade").is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
    });
    path_ok && req.method == "GET" && upgrade
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &str) -> String {
    base64(&sha1(format!("{}{GUID}", key.trim()).as_bytes()))
}

/// Encodes one unmasked (server) frame.
pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(((fin as u8) << 7) | (opcode & 0x0f));
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// Answers the handshake, then echoes until the client closes.
pub async fn serve(mut stream: TcpStream, mut buf: Vec<u8>, req: &Request, state: &State) {
    let Some(key) = req.header("sec-websocket-key") else {
        let _ = stream
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await;
        return;
    };
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-accept: {}\r\nx-mock-name: {}\r\n\r\n",
        accept_key(key),
        state.cfg.name
    )
    .into_bytes();
    if req.path == "/ws" {
        // ComfyUI greets every new socket; sent with the 101 in one write.
        let hello = serde_json::json!({"type": "status", "data": {"sid": format!("{}-{}", state.cfg.name, state.next_id())}, "served_by": state.cfg.name});
        out.extend_from_slice(&frame(true, 0x1, hello.to_string().as_bytes()));
    }
    if stream.write_all(&out).await.is_err() {
        return;
    }
    loop {
        let (fin, opcode, payload) = match read_frame(&mut stream, &mut buf).await {
            Ok(f) => f,
            Err(Some(code)) => {
                let _ = stream
                    .write_all(&frame(true, 0x8, &code.to_be_bytes()))
                    .await;
                let _ = stream.shutdown().await;
                return;
            }
            Err(None) => return,
        };
        let reply = match opcode {
            0x8 => {
                let _ = stream.write_all(&frame(true, 0x8, &payload)).await;
                let _ = stream.shutdown().await;
                return;
            }
            0x9 => frame(true, 0xA, &payload),
            0xA => continue,
            op => frame(fin, op, &payload),
        };
        if stream.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// Reads one client frame: (fin, opcode, unmasked payload). `Err(Some(code))`
/// asks to close with that status code; `Err(None)`: the peer is gone.
async fn read_frame(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<(bool, u8, Vec<u8>), Option<u16>> {
    fill(stream, buf, 2).await?;
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0f;
    if buf[1] & 0x80 == 0 {
        return Err(Some(1002)); // client frames must be masked
    }
    let (len, mut at) = match buf[1] & 0x7f {
        126 => {
            fill(stream, buf, 4).await?;
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            fill(stream, buf, 10).await?;
            (u64::from_be_bytes(buf[2..10].try_into().unwrap()), 10)
        }
        n => (n as u64, 2),
    };
    if len > MAX_PAYLOAD {
        return Err(Some(1009));
    }
    fill(stream, buf, at + 4 + len as usize).await?;
    let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    at += 4;
    let payload: Vec<u8> = buf[at..at + len as usize]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    buf.drain(..at + len as usize);
    Ok((fin, opcode, payload))
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, want: usize) -> Result<(), Option<u16>> {
    let mut tmp = [0u8; 16 * 1024];
    while buf.len() < want {
        match stream.read(&mut tmp).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    Ok(())
}

/// SHA-1 (FIPS 180-4), for the handshake only.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes(block[i * 4..i * 4 + 4].try_into().unwrap());
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        s.push(T[(n >> 18) as usize & 63] as char);
        s.push(T[(n >> 12) as usize & 63] as char);
        s.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        s.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_key_from_rfc_6455() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
        let hex: String = sha1(b"abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn frame_lengths() {
        assert_eq!(frame(true, 1, b"hi"), b"\x81\x02hi");
        assert_eq!(&frame(false, 2, &[0; 300])[..4], b"\x02\x7e\x01\x2c");
        assert_eq!(
            &frame(true, 2, &[0; 70_000])[..10],
            b"\x82\x7f\0\0\0\0\0\x01\x11\x70"
        );
    }
}
