//! A client in one network namespace talking over a veth pair to a server in another,
//! with the agent running in the server's namespace on the veth device.

use gor_tests::{
    agent::Agent,
    netns::{in_netns, Pair},
    traffic::{Client, Server},
};

#[test]
fn client_and_server_in_namespaces_over_veth() {
    let pair = Pair::new("veth");
    let server = Server::start(in_netns(&pair.b, || {
        gor_tests::traffic::listen(Pair::B_ADDR)
    }));
    let agent = Agent::start_with("netns", &[server.addr.port()], &["vb"], Some(&pair.b), &[]);
    let addr = server.addr;
    let client = in_netns(&pair.a, move || {
        let mut c = Client::connect(addr);
        for i in 0..200 {
            c.request(i, (i as usize * 101) % 70_000, (i as usize * 997) % 200_000);
        }
        c
    });
    let cap = agent.stop();
    crate::streams::assert_exact(&cap, &client, &server);
    cap.assert_nothing_lost();
    // The namespaces (and with them the veth pair and anything attached) go with `pair`.
    drop(pair);
}
