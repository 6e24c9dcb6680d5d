//! systemd readiness (`sd_notify`): with `Type=notify`, systemd, and the tests, learn
//! that the programs are attached and capture has begun, without guessing with sleeps.

use std::os::unix::net::UnixDatagram;

fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let res = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = res {
        tracing::warn!("sd_notify {state}: {e}");
    }
}

/// Capture is running.
pub fn ready() {
    send("READY=1");
}

/// Shutting down.
pub fn stopping() {
    send("STOPPING=1");
}
