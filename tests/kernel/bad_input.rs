//! Traffic the agent must ignore or survive: non-TCP, other ports, IP options, IP
//! fragments, zero-window probes, RSTs in the middle of a stream. After all of it, the
//! agent still captures a normal connection exactly and exits cleanly.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    time::Duration,
};

use gor_tests::{
    agent::Agent,
    host::HostState,
    traffic::{listen, pattern, Client, Server},
};

/// Sends an IPv4 TCP segment to 127.0.0.1:`port` in two fragments, through a raw socket.
fn send_fragments(port: u16) {
    // SAFETY: plain socket(2); the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    let mut tcp = [0u8; 20 + 32];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&port.to_be_bytes());
    tcp[4..8].copy_from_slice(&1u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; // PSH|ACK
    tcp[20..].copy_from_slice(&[b'x'; 32]);
    // First fragment: 24 bytes of the TCP segment, MF set; second: the rest at offset 3*8.
    for (off, chunk, more) in [(0usize, &tcp[..24], true), (24, &tcp[24..], false)] {
        let mut ip = vec![0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + chunk.len()) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&0x4242u16.to_be_bytes());
        let frag = ((off / 8) as u16) | if more { 0x2000 } else { 0 };
        ip[6..8].copy_from_slice(&frag.to_be_bytes());
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[127, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[127, 0, 0, 1]);
        ip.extend_from_slice(chunk);
        let dst = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: the buffer and address outlive the call.
        let n = unsafe {
            libc::sendto(
                fd,
                ip.as_ptr().cast(),
                ip.len(),
                0,
                (&dst as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        assert_eq!(
            n as usize,
            ip.len(),
            "sendto: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
}

/// Puts IPv4 options (three NOPs and an end-of-list) on every packet of `s`.
fn set_ip_options(s: &TcpStream) {
    let opts = [1u8, 1, 1, 0];
    // SAFETY: setsockopt reads `opts` for the given length.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_OPTIONS,
            opts.as_ptr().cast(),
            opts.len() as u32,
        )
    };
    assert_eq!(rc, 0, "IP_OPTIONS: {}", std::io::Error::last_os_error());
}

#[test]
fn bad_input_is_ignored_or_counted_and_capture_goes_on() {
    let host = HostState::snapshot();
    let server = Server::start(listen("127.0.0.1"));
    let port = server.addr.port();
    let other = Server::start(listen("127.0.0.1"));
    let agent = Agent::start("bad-input", &[port], &["lo"]);

    // Non-TCP traffic to the captured port, and TCP to a port that is not captured.
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    udp.send_to(b"GET / HTTP/1.1\r\n\r\n", ("127.0.0.1", port))
        .expect("udp send");
    let mut elsewhere = Client::connect(other.addr);
    elsewhere.request(1, 10, 10);

    // IP fragments of a TCP segment for the captured port.
    send_fragments(port);

    // A connection whose packets carry IP options.
    let s = TcpStream::connect(server.addr).expect("connect");
    set_ip_options(&s);
    let mut with_options = Client::new(s);
    for i in 0..10 {
        with_options.request(i, 3000, 3000);
    }

    // A reset in the middle of a request: SO_LINGER 0 makes close() send RST.
    let mut reset = TcpStream::connect(server.addr).expect("connect");
    let partial = b"POST /upload HTTP/1.1\r\nContent-Length: 100000\r\n\r\nonly the start";
    reset.write_all(partial).expect("write");
    let reset_local = reset.local_addr().expect("addr");
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads the struct for its size.
    unsafe {
        libc::setsockopt(
            reset.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        )
    };
    drop(reset);

    // And after all that, an ordinary connection.
    let mut normal = Client::connect(server.addr);
    normal.request(7, 1234, 4321);

    let cap = agent.stop();
    assert!(
        !cap.clients()
            .contains(&elsewhere.local.to_string().as_str()),
        "other ports are not captured"
    );
    assert!(
        cap.kernel("fragments") >= 2,
        "fragments counted: {}",
        cap.stats
    );
    crate::streams::assert_exact(&cap, &with_options, &server);
    crate::streams::assert_exact(&cap, &normal, &server);
    let reset_conn = cap.by_client(&reset_local.to_string());
    assert_eq!(reset_conn.c2s, partial, "bytes before the reset are kept");
    host.assert_clean();
}

#[test]
fn zero_window_probes_do_not_corrupt_the_stream() {
    let host = HostState::snapshot();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let agent = Agent::start("zero-window", &[addr.port()], &["lo"]);
    let data = pattern(99, 4 << 20);
    let to_send = data.clone();
    let client = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        let local = s.local_addr().expect("addr");
        s.write_all(&to_send).expect("write");
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        local
    });
    let (mut conn, _) = listener.accept().expect("accept");
    // Let the receive window close: the client's stack then probes the zero window until
    // the server reads again. (A deliberate stall, not a synchronisation.)
    std::thread::sleep(Duration::from_millis(1500));
    let mut got = Vec::new();
    conn.read_to_end(&mut got).expect("read");
    let local = client.join().expect("client");
    assert_eq!(got, data);
    let cap = agent.stop();
    let c = cap.by_client(&local.to_string());
    assert!(
        c.c2s == data,
        "captured {} bytes of {}",
        c.c2s.len(),
        data.len()
    );
    cap.assert_nothing_lost();
    host.assert_clean();
}
