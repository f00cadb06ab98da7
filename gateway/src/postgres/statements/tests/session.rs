//! Session state: SET, RESET, SHOW, LISTEN, NOTIFY, UNLISTEN, DISCARD.

use super::*;

#[test]
fn set_reset_show_name_the_setting_only() {
    case("SET search_path = ehr, public", Verb::Set, &["search_path="]);
    case("SET LOCAL statement_timeout TO 0", Verb::Set, &["statement_timeout="]);
    case("SET ROLE admin", Verb::Set, &["role="]);
    case("SET SESSION AUTHORIZATION DEFAULT", Verb::Set, &["session_authorization="]);
    case("SET TIME ZONE 'UTC'", Verb::Set, &["timezone="]);
    case("SET standard_conforming_strings = off", Verb::Set, &["standard_conforming_strings="]);
    case("RESET search_path", Verb::Reset, &["search_path="]);
    case("RESET ALL", Verb::Reset, &[]);
    case("SHOW server_version", Verb::Show, &["server_version="]);
    case("SHOW ALL", Verb::Show, &["all="]);
}

#[test]
fn listen_notify_unlisten() {
    case("LISTEN ward_events", Verb::Listen, &[]);
    case("NOTIFY ward_events, 'payload'", Verb::Notify, &[]);
    case("UNLISTEN *", Verb::Unlisten, &[]);
    case("SELECT pg_notify('ward_events', 'x')", Verb::Select, &["pg_notify()/call"]);
}

#[test]
fn discard() {
    case("DISCARD ALL", Verb::Other("discard"), &[]);
}
