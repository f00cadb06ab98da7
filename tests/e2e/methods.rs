//! Request methods and the gateway's own actions: a method outside the served list gets
//! 501; no method, however spelled, is the emergency declaration (`custos:breakglass`),
//! even where a route serves a method named `breakglass`; a `_method` override is refused
//! on policy routes. Every refusal is on the record, and nothing reaches the upstream.

use crate::harness::*;

#[tokio::test]
async fn no_method_reaches_a_gateway_action_and_unserved_methods_get_501() {
    let p = policies();
    let demo = demo().await;
    // The example HIPAA policy; IdP group `clinicians` is decided as `nurse` (alice, who
    // can do MFA, is a nurse). Route `lax` serves the same records under /lax, and also
    // methods named like the gateway's actions.
    let routes = format!(
        "[[routes]]\nname = \"ehr\"\npath = \"/patients\"\nupstream = \"http://{up}\"\nrequire_mfa = false\nresource = \"ehr\"\ndomain = \"cardiology\"\n\n\
         [[routes]]\nname = \"lax\"\npath = \"/lax\"\nstrip_prefix = \"/lax\"\nupstream = \"http://{up}\"\nrequire_mfa = false\nresource = \"ehr\"\ndomain = \"cardiology\"\n\
         methods = [\"GET\", \"POST\", \"breakglass\", \"BREAKGLASS\", \"review\"]\n",
        up = demo.addr
    );
    let policy = format!(
        "[policy]\nmodel = \"{}\"\npolicy = \"{}\"\n[policy.group_roles]\nclinicians = \"nurse\"\n",
        p.join("hipaa_model.conf").display(),
        p.join("hipaa_policy.csv").display()
    );
    let s = site(Opts { policy: &policy, routes: Some(routes), ..Default::default() }).await;
    let audit = s.gw.audit_dir();
    let c = browser();
    assert_eq!(sign_in(&s, &c, "/patients/1", "alice", "alice-password", Some("123456")).await.status(), 302);
    let url = |path: &str| format!("{}{path}", s.origin);
    let send = |method: &str, path: &str| {
        c.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url(path))
            .header("accept", "application/json")
            .send()
    };
    // The nurse, with MFA, may read record 1 and not the restricted record 3.
    assert_eq!(send("GET", "/patients/1").await.unwrap().status(), 200);
    assert_eq!(send("GET", "/patients/3").await.unwrap().status(), 403);

    // The right to declare an emergency is not a method: `breakglass` (any case) is not
    // served, and says so.
    for m in ["breakglass", "BREAKGLASS", "Breakglass", "review", "PROPFIND"] {
        let r = send(m, "/patients/3").await.unwrap();
        assert_eq!(r.status(), 501, "{m}");
        let e = audit_has(&audit, |e| {
            kind(e) == "access.decision"
                && e.method.as_deref() == Some(&*m)
                && reason(e).as_deref() == Some("method_not_allowed")
        })
        .await;
        assert_eq!(decision(&e).as_deref(), Some("deny"), "{m}");
        assert_eq!(e.status, Some(501), "{m}");
    }
    // Methods are compared case-sensitively: `get` is not `GET`.
    assert_eq!(send("get", "/patients/1").await.unwrap().status(), 501);

    // The gateway's spelling is not even a method (`:` is no token character).
    let (status, _) = raw_status(
        s.gw.http,
        b"custos:breakglass /patients/3 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status, 400);

    // Where a route serves methods so named, the policy decides them as what they are,
    // requests, and the grant to declare an emergency does not cover them.
    for m in ["breakglass", "BREAKGLASS", "review"] {
        let r = send(m, "/lax/patients/3").await.unwrap();
        assert_eq!(r.status(), 403, "{m}");
        audit_has(&audit, |e| {
            kind(e) == "access.decision"
                && e.method.as_deref() == Some(&*m)
                && e.route.as_deref() == Some("lax")
                && reason(e).as_deref() == Some("policy")
        })
        .await;
        assert_eq!(send(m, "/lax/patients/1").await.unwrap().status(), 403, "{m} on a record she may read");
    }
    // A method the route does not list, where another route serves it.
    assert_eq!(send("breakglass", "/patients/1").await.unwrap().status(), 501);

    // A method override in the query is refused on policy routes (override headers are
    // stripped: see the header tests).
    for q in ["_method=DELETE", "a=1&%5Fmethod=DELETE", "_METHOD=DELETE"] {
        let r = c.post(url(&format!("/patients/1/notes?{q}"))).body("x").send().await.unwrap();
        assert_eq!(r.status(), 400, "{q}");
    }
    audit_has(&audit, |e| kind(e) == "access.decision" && reason(e).as_deref() == Some("method_override")).await;

    // Nothing of that reached the upstream: only the two reads she may do.
    let seen = demo.seen();
    assert!(
        seen.iter().all(|x| x.method == "GET" && x.target == "/patients/1"),
        "reached the upstream: {:?}",
        seen.iter().map(|x| format!("{} {}", x.method, x.target)).collect::<Vec<_>>()
    );
}
