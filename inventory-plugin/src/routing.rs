//! Synapse's processes as MDAD creates them, and the HAProxy routing table that sends each
//! endpoint to the workers serving it.
//!
//! MDAD runs without its reverse-proxy companion, so HAProxy routes Synapse's endpoints itself.
//! [`worker_processes`] follows MDAD's naming and port numbering for the counts the inventory
//! emits (roles/custom/matrix-synapse/tasks/synapse/workers/init.yml and the port ranges of its
//! defaults); [`RoutingTable::build`] turns the web-serving ones into HAProxy back-ends and an
//! ordered list of routes. Endpoint lists follow Synapse's worker documentation (docs/workers.md);
//! which specialized type serves what follows MDAD's own assignment. Anything no route matches
//! goes to the main process.

use serde_json::{json, Value};

use crate::synapse::MdadWorkers;

/// The main process's plain HTTP listeners (MDAD's `matrix_synapse_container_client_api_port`
/// and `matrix_synapse_container_federation_api_plain_port`).
pub const MAIN_CLIENT_PORT: u16 = 8008;
pub const MAIN_FEDERATION_PORT: u16 = 8048;
/// MDAD's name of the main process's container.
pub const MAIN_NAME: &str = "matrix-synapse";

/// First HTTP port of each worker type (MDAD's `matrix_synapse_workers_<type>_workers_port_range_start`).
const ROOM_PORT: u16 = 28111;
const SYNC_PORT: u16 = 28211;
const CLIENT_READER_PORT: u16 = 28311;
const FEDERATION_READER_PORT: u16 = 28411;
const GENERIC_PORT: u16 = 18111;
/// Stream writers share one numbering across all streams
/// (`matrix_synapse_workers_stream_writer_workers_http_port_range_start`).
const STREAM_WRITER_PORT: u16 = 20011;
const MEDIA_REPOSITORY_PORT: u16 = 18551;
const USER_DIR_PORT: u16 = 18661;

/// The stream writers whose listener serves client requests (MDAD's
/// `matrix_synapse_workers_webserving_stream_writer_types`): all but `events`.
const WEBSERVING_STREAMS: [&str; 9] = [
    "typing",
    "to_device",
    "account_data",
    "receipts",
    "presence",
    "push_rules",
    "device_lists",
    "thread_subscriptions",
    "quarantined_media_changes",
];

/// One Synapse worker process as MDAD names and numbers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Container and `worker_name`, e.g. `matrix-synapse-worker-room-0`.
    pub name: String,
    /// MDAD's worker type: `room_worker`, `sync_worker`, `client_reader`, `federation_reader`,
    /// `generic_worker`, `stream_writer`, `federation_sender`, `pusher`, `appservice`,
    /// `user_dir`, `media_repository`, `background`.
    pub kind: &'static str,
    /// The stream of a stream writer.
    pub stream: Option<&'static str>,
    /// The HTTP listener; `None` when the process serves no web requests.
    pub port: Option<u16>,
}

impl Process {
    pub fn to_json(&self) -> Value {
        json!({"name": self.name, "type": self.kind, "stream": self.stream, "port": self.port})
    }
}

fn numbered(
    out: &mut Vec<Process>,
    count: u32,
    kind: &'static str,
    prefix: &str,
    port: Option<u16>,
) {
    for i in 0..count {
        out.push(Process {
            name: format!("matrix-synapse-worker-{prefix}-{i}"),
            kind,
            stream: None,
            // Counts are at most 64 per type (the topology refuses more), so this never overflows.
            port: port.map(|p| p + i as u16),
        });
    }
}

/// Every worker MDAD creates for these counts, in MDAD's order.
pub fn worker_processes(w: &MdadWorkers) -> Vec<Process> {
    let single = |name: &str| {
        w.singles
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, c)| *c)
    };
    let mut out = Vec::new();
    numbered(&mut out, w.room, "room_worker", "room", Some(ROOM_PORT));
    numbered(&mut out, w.sync, "sync_worker", "sync", Some(SYNC_PORT));
    numbered(
        &mut out,
        w.client_reader,
        "client_reader",
        "client-reader",
        Some(CLIENT_READER_PORT),
    );
    numbered(
        &mut out,
        w.federation_reader,
        "federation_reader",
        "federation-reader",
        Some(FEDERATION_READER_PORT),
    );
    // The specialized preset runs no generic workers (MDAD refuses to mix them).
    numbered(&mut out, 0, "generic_worker", "generic", Some(GENERIC_PORT));
    let streams = std::iter::repeat_n("events", w.events_stream_writers as usize).chain(
        w.other_stream_writers
            .iter()
            .flat_map(|(s, n)| std::iter::repeat_n(*s, *n as usize)),
    );
    for (idx, stream) in streams.enumerate() {
        out.push(Process {
            name: format!(
                "matrix-synapse-worker-stream-writer-{idx}-{}",
                stream.replace('_', "-")
            ),
            kind: "stream_writer",
            stream: Some(stream),
            port: WEBSERVING_STREAMS
                .contains(&stream)
                .then_some(STREAM_WRITER_PORT + idx as u16),
        });
    }
    numbered(
        &mut out,
        w.federation_sender,
        "federation_sender",
        "federation-sender",
        None,
    );
    numbered(&mut out, single("pusher"), "pusher", "pusher", None);
    numbered(
        &mut out,
        single("appservice"),
        "appservice",
        "appservice",
        None,
    );
    numbered(
        &mut out,
        single("user_dir"),
        "user_dir",
        "user-dir",
        Some(USER_DIR_PORT),
    );
    numbered(
        &mut out,
        single("media_repository"),
        "media_repository",
        "media-repository",
        Some(MEDIA_REPOSITORY_PORT),
    );
    numbered(
        &mut out,
        single("background"),
        "background",
        "background",
        None,
    );
    out
}

/// Which public front-end a route or back-end belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Port 443: the client-server API (and Synapse's own `/_synapse/...`).
    Client,
    /// Port 8448: the federation API.
    Federation,
}

impl Api {
    pub fn name(self) -> &'static str {
        match self {
            Api::Client => "client",
            Api::Federation => "federation",
        }
    }

    /// The main process's listener for this API: every worker back-end's backup server.
    pub fn main_port(self) -> u16 {
        match self {
            Api::Client => MAIN_CLIENT_PORT,
            Api::Federation => MAIN_FEDERATION_PORT,
        }
    }

    /// The main process's back-end for this API.
    pub fn main_backend(self) -> &'static str {
        match self {
            Api::Client => "synapse_main",
            Api::Federation => "synapse_main_federation",
        }
    }
}

/// HAProxy `balance` of a back-end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Sticky per user: the access token's user part (the front-end sets `txn.matrix_user`).
    User,
    /// Sticky per room: the room ID in the path (the text after the first `!`, up to `/`).
    Room,
    /// The fewest open connections.
    LeastConn,
    /// The client's address: a remote server's transactions stay on one worker.
    Source,
    /// Round robin (a single writer, or writers that may all take any request).
    RoundRobin,
}

impl Balance {
    pub fn haproxy(self) -> &'static str {
        match self {
            Balance::User => "hash var(txn.matrix_user)",
            Balance::Room => "hash path,url_dec,field(2,!),field(1,/)",
            Balance::LeastConn => "leastconn",
            Balance::Source => "source",
            Balance::RoundRobin => "roundrobin",
        }
    }
}

/// One HAProxy back-end: the workers of one type (or one stream), with the main process as the
/// backup server that takes over when every worker is down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub name: String,
    pub api: Api,
    pub balance: Balance,
    /// `(process name, port)` of each worker.
    pub servers: Vec<(String, u16)>,
    /// Concurrent requests per server before HAProxy queues.
    pub maxconn: u32,
    /// How long a queued request waits for a free slot before HAProxy answers 503.
    pub timeout_queue: &'static str,
}

impl Backend {
    pub fn to_json(&self) -> Value {
        let servers: Vec<Value> = self
            .servers
            .iter()
            .map(|(name, port)| json!({"name": name, "port": port}))
            .collect();
        json!({
            "name": self.name,
            "api": self.api.name(),
            "balance": self.balance.haproxy(),
            "servers": servers,
            "backup_port": self.api.main_port(),
            "maxconn": self.maxconn,
            "timeout_queue": self.timeout_queue,
        })
    }
}

/// One route: requests on `api` whose path matches any of `paths` go to `backend`. Routes are
/// tried in order; the first match wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub api: Api,
    pub backend: String,
    pub paths: Vec<&'static str>,
}

impl Route {
    pub fn to_json(&self) -> Value {
        json!({"api": self.api.name(), "backend": self.backend, "paths": self.paths})
    }
}

/// Client API versions, as Synapse's documentation spells the alternatives.
macro_rules! client {
    ($rest:literal) => {
        concat!("^/_matrix/client/(api/v1|r0|v3|unstable)/", $rest)
    };
}

/// Client endpoints only the main process serves, or that must stay on one process (SSO,
/// QR-code login), ahead of the broad room-ID route that would otherwise take them.
const MAIN_CLIENT_PATHS: &[&str] = &[
    client!("account/3pid/"),
    client!("directory/list/room/"),
    client!("rooms/[^/]+/(forget|upgrade|report)"),
    client!("login/sso/redirect"),
    "^/_matrix/client/(unstable|v1)/org.matrix.msc4108/rendezvous",
    "^/_synapse/client/rendezvous",
];

/// Endpoints of each webserving stream writer (Synapse: "Stream writers").
fn stream_paths(stream: &str) -> &'static [&'static str] {
    match stream {
        "typing" => &[client!("rooms/.*/typing")],
        "to_device" => &["^/_matrix/client/(r0|v3|unstable)/sendToDevice/"],
        "account_data" => &[
            "^/_matrix/client/(r0|v3|unstable)/.*/tags",
            "^/_matrix/client/(r0|v3|unstable)/.*/account_data",
        ],
        "receipts" => &[
            "^/_matrix/client/(r0|v3|unstable)/rooms/.*/receipt",
            "^/_matrix/client/(r0|v3|unstable)/rooms/.*/read_markers",
        ],
        "presence" => &[client!("presence/")],
        "push_rules" => &[client!("pushrules/")],
        "device_lists" => &[
            "^/_matrix/client/(r0|v3)/delete_devices$",
            client!("devices(/|$)"),
            "^/_matrix/client/(r0|v3|unstable)/keys/upload",
            client!("keys/device_signing/upload$"),
            client!("keys/signatures/upload$"),
        ],
        "thread_subscriptions" => &[
            "^/_matrix/client/unstable/io.element.msc4306/rooms/.*/thread/.*/subscription$",
            "^/_matrix/client/unstable/io.element.msc4308/thread_subscriptions$",
        ],
        "quarantined_media_changes" => &["^/_synapse/admin/v1/quarantine_media/"],
        _ => &[],
    }
}

/// The media repository's client-side endpoints and media admin APIs.
const MEDIA_CLIENT_PATHS: &[&str] = &[
    "^/_matrix/media/",
    "^/_matrix/client/v1/media/",
    "^/_synapse/media/",
    "^/_synapse/admin/v1/purge_media_cache$",
    "^/_synapse/admin/v1/room/.*/media",
    "^/_synapse/admin/v1/user/.*/media",
    "^/_synapse/admin/v1/media/",
    "^/_synapse/admin/v1/users/.*/media$",
];

/// Media over federation (authenticated, and the legacy unauthenticated download path that
/// older servers still use on the federation port).
const MEDIA_FEDERATION_PATHS: &[&str] = &["^/_matrix/federation/v1/media/", "^/_matrix/media/"];

const USER_DIR_PATHS: &[&str] = &["^/_matrix/client/(r0|v3|unstable)/user_directory/search$"];

/// Sync and the older event-stream endpoints, plus native sliding sync.
const SYNC_PATHS: &[&str] = &[
    "^/_matrix/client/(r0|v3)/sync$",
    "^/_matrix/client/(api/v1|r0|v3)/events$",
    "^/_matrix/client/(api/v1|r0|v3)/initialSync$",
    "^/_matrix/client/(api/v1|r0|v3)/rooms/[^/]+/initialSync$",
    "^/_matrix/client/unstable/org.matrix.simplified_msc3575/sync$",
];

/// Any client request naming a room ID (`!` or `%21`, then `:` or `%3A`), hashed by room.
const ROOM_CLIENT_PATHS: &[&str] = &["^/_matrix/client/.*(!|%21)[^/]+(:|%3[Aa])"];

/// Room-bound federation reads (state, backfill, missing events), hashed by room.
const ROOM_FEDERATION_PATHS: &[&str] =
    &["^/_matrix/federation/(v1|v2)/(state|state_ids|backfill|get_missing_events)/(!|%21)"];

/// Client endpoints any generic worker serves (Synapse: `synapse.app.generic_worker`), minus
/// sync and the stream writers' endpoints; the room-bound ones come after the room route, so
/// they reach client readers only when no room worker runs.
const CLIENT_READER_PATHS: &[&str] = &[
    client!("(createRoom|publicRooms|joined_rooms|search)$"),
    "^/_matrix/client/(r0|v3|unstable)/(capabilities|notifications|password_policy)$",
    "^/_matrix/client/versions$",
    client!("voip/turnServer$"),
    "^/_matrix/client/(r0|v3|unstable)/account/(3pid|whoami|deactivate)$",
    "^/_matrix/client/(r0|v3|unstable)/user/.*/filter(/|$)",
    client!("directory/room/"),
    client!("(join|knock|profile)/"),
    "^/_matrix/client/(r0|v3|unstable)/keys/(query|changes|claim)$",
    "^/_matrix/client/(r0|v3|unstable)/room_keys/",
    client!("login$"),
    "^/_matrix/client/(r0|v3|unstable)/register(/available)?$",
    "^/_matrix/client/v1/register/m.login.registration_token/validity$",
    "^/_matrix/client/unstable/im.nheko.summary/summary/",
    client!("rooms/.*/(joined_members|members|state|aliases)$"),
    client!("rooms/.*/(context|event|relations|state)/"),
    client!("rooms/.*/(redact|send)"),
    client!("rooms/.*/(join|invite|leave|ban|unban|kick)$"),
    "^/_matrix/client/v1/rooms/.*/(hierarchy|threads|timestamp_to_event)$",
];

/// Federation endpoints only the main process serves.
const MAIN_FEDERATION_PATHS: &[&str] = &["^/_matrix/federation/v1/openid/userinfo$"];

/// Inbound transactions: balanced by source so one server's transactions stay in order.
const FEDERATION_SEND_PATHS: &[&str] = &["^/_matrix/federation/v1/send/"];

/// Every other federation request, and key queries (`/_matrix/key/v2/server` stays on main).
const FEDERATION_READER_PATHS: &[&str] =
    &["^/_matrix/federation/(v1|v2)/", "^/_matrix/key/v2/query"];

/// Per-server connection limits: sync requests are long polls, so sync workers take many and
/// shed the excess quickly; every other worker takes fewer and lets requests queue longer.
const MAXCONN: u32 = 500;
const SYNC_MAXCONN: u32 = 2000;
const TIMEOUT_QUEUE: &str = "30s";
const SYNC_TIMEOUT_QUEUE: &str = "5s";

/// HAProxy's Synapse back-ends and ordered routes for one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingTable {
    pub backends: Vec<Backend>,
    pub routes: Vec<Route>,
}

impl RoutingTable {
    /// The table for these workers. With `federation` off, no federation routes or back-ends
    /// exist (MDAD then runs no federation listener).
    pub fn build(processes: &[Process], federation: bool) -> RoutingTable {
        let mut t = RoutingTable {
            backends: Vec::new(),
            routes: Vec::new(),
        };
        let of = |kind: &str| -> Vec<(String, u16)> {
            processes
                .iter()
                .filter(|p| p.kind == kind)
                .filter_map(|p| p.port.map(|port| (p.name.clone(), port)))
                .collect()
        };

        // Client API, most specific first.
        t.route(Api::Client, Api::Client.main_backend(), MAIN_CLIENT_PATHS);
        for stream in WEBSERVING_STREAMS {
            let writers: Vec<(String, u16)> = processes
                .iter()
                .filter(|p| p.stream == Some(stream))
                .filter_map(|p| p.port.map(|port| (p.name.clone(), port)))
                .collect();
            // Without a writer, the stream's endpoints go to main explicitly: the room route
            // below would otherwise send some of them to a worker that cannot write the stream.
            let backend = if writers.is_empty() {
                Api::Client.main_backend().to_owned()
            } else {
                t.backend(
                    &format!("synapse_stream_writer_{stream}"),
                    Api::Client,
                    Balance::RoundRobin,
                    writers,
                )
            };
            t.route(Api::Client, &backend, stream_paths(stream));
        }
        let media = of("media_repository");
        t.worker_route(
            "synapse_media_repository",
            Api::Client,
            Balance::LeastConn,
            &media,
            MEDIA_CLIENT_PATHS,
        );
        t.worker_route(
            "synapse_user_dir",
            Api::Client,
            Balance::RoundRobin,
            &of("user_dir"),
            USER_DIR_PATHS,
        );
        t.worker_route(
            "synapse_sync_worker",
            Api::Client,
            Balance::User,
            &of("sync_worker"),
            SYNC_PATHS,
        );
        let room = of("room_worker");
        t.worker_route(
            "synapse_room_worker",
            Api::Client,
            Balance::Room,
            &room,
            ROOM_CLIENT_PATHS,
        );
        t.worker_route(
            "synapse_client_reader",
            Api::Client,
            Balance::LeastConn,
            &of("client_reader"),
            CLIENT_READER_PATHS,
        );

        if federation {
            t.route(
                Api::Federation,
                Api::Federation.main_backend(),
                MAIN_FEDERATION_PATHS,
            );
            t.worker_route(
                "synapse_media_repository_federation",
                Api::Federation,
                Balance::LeastConn,
                &media,
                MEDIA_FEDERATION_PATHS,
            );
            t.worker_route(
                "synapse_room_worker_federation",
                Api::Federation,
                Balance::Room,
                &room,
                ROOM_FEDERATION_PATHS,
            );
            let readers = of("federation_reader");
            t.worker_route(
                "synapse_federation_reader_send",
                Api::Federation,
                Balance::Source,
                &readers,
                FEDERATION_SEND_PATHS,
            );
            t.worker_route(
                "synapse_federation_reader",
                Api::Federation,
                Balance::LeastConn,
                &readers,
                FEDERATION_READER_PATHS,
            );
        }
        t
    }

    fn backend(
        &mut self,
        name: &str,
        api: Api,
        balance: Balance,
        servers: Vec<(String, u16)>,
    ) -> String {
        let sync = balance == Balance::User;
        self.backends.push(Backend {
            name: name.to_owned(),
            api,
            balance,
            servers,
            maxconn: if sync { SYNC_MAXCONN } else { MAXCONN },
            timeout_queue: if sync {
                SYNC_TIMEOUT_QUEUE
            } else {
                TIMEOUT_QUEUE
            },
        });
        name.to_owned()
    }

    fn route(&mut self, api: Api, backend: &str, paths: &[&'static str]) {
        self.routes.push(Route {
            api,
            backend: backend.to_owned(),
            paths: paths.to_vec(),
        });
    }

    /// A back-end and its route when workers of the type exist; nothing otherwise, so the
    /// paths fall through to later routes and finally to main.
    fn worker_route(
        &mut self,
        name: &str,
        api: Api,
        balance: Balance,
        servers: &[(String, u16)],
        paths: &[&'static str],
    ) {
        if servers.is_empty() {
            return;
        }
        let backend = self.backend(name, api, balance, servers.to_vec());
        self.route(api, &backend, paths);
    }

    /// The back-end a request on `api` for `path` reaches: the first route one of whose
    /// patterns matches (`matches` is the regex engine), else the main process.
    pub fn backend_for(&self, api: Api, path: &str, matches: impl Fn(&str, &str) -> bool) -> &str {
        self.routes
            .iter()
            .filter(|r| r.api == api)
            .find(|r| r.paths.iter().any(|re| matches(re, path)))
            .map_or(api.main_backend(), |r| r.backend.as_str())
    }
}

/// Checks a path pattern can stand unquoted as one word of an HAProxy `path_reg` ACL.
pub fn haproxy_word(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '\\' | '"' | '\'' | '#'))
}

/// `/.well-known/matrix/server`: federation goes to `matrix.<domain>` on 8448.
pub fn well_known_server(domain: &str) -> String {
    json!({"m.server": format!("matrix.{domain}:8448")}).to_string()
}

/// `/.well-known/matrix/client`: clients use `https://matrix.<domain>`.
pub fn well_known_client(domain: &str) -> String {
    json!({"m.homeserver": {"base_url": format!("https://matrix.{domain}")}}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{design_workers, Scale};

    fn workers(scale: Scale) -> MdadWorkers {
        MdadWorkers::from_design(&design_workers(scale))
    }

    /// HAProxy's `path_reg` on a path (the patterns use the syntax PCRE and `regex` share).
    fn re_match(pattern: &str, path: &str) -> bool {
        regex::Regex::new(pattern)
            .unwrap_or_else(|e| panic!("{pattern}: {e}"))
            .is_match(path)
    }

    #[test]
    fn small_site_processes_follow_mdad_names_and_ports() {
        let p = worker_processes(&workers(Scale::Small));
        let names: Vec<(&str, Option<u16>)> = p.iter().map(|p| (p.name.as_str(), p.port)).collect();
        assert_eq!(
            names,
            [
                ("matrix-synapse-worker-room-0", Some(28111)),
                ("matrix-synapse-worker-sync-0", Some(28211)),
                ("matrix-synapse-worker-sync-1", Some(28212)),
                ("matrix-synapse-worker-sync-2", Some(28213)),
                ("matrix-synapse-worker-sync-3", Some(28214)),
                ("matrix-synapse-worker-client-reader-0", Some(28311)),
                ("matrix-synapse-worker-federation-reader-0", Some(28411)),
                ("matrix-synapse-worker-stream-writer-0-events", None),
                ("matrix-synapse-worker-stream-writer-1-typing", Some(20012)),
                (
                    "matrix-synapse-worker-stream-writer-2-to-device",
                    Some(20013)
                ),
                (
                    "matrix-synapse-worker-stream-writer-3-account-data",
                    Some(20014)
                ),
                (
                    "matrix-synapse-worker-stream-writer-4-receipts",
                    Some(20015)
                ),
                (
                    "matrix-synapse-worker-stream-writer-5-presence",
                    Some(20016)
                ),
                (
                    "matrix-synapse-worker-stream-writer-6-push-rules",
                    Some(20017)
                ),
                (
                    "matrix-synapse-worker-stream-writer-7-device-lists",
                    Some(20018)
                ),
                (
                    "matrix-synapse-worker-stream-writer-8-quarantined-media-changes",
                    Some(20019)
                ),
                ("matrix-synapse-worker-federation-sender-0", None),
                ("matrix-synapse-worker-federation-sender-1", None),
                ("matrix-synapse-worker-pusher-0", None),
                ("matrix-synapse-worker-appservice-0", None),
                ("matrix-synapse-worker-user-dir-0", Some(18661)),
                ("matrix-synapse-worker-media-repository-0", Some(18551)),
                ("matrix-synapse-worker-background-0", None),
            ]
        );
        // The main process plus every worker is what the pool sizing counts.
        assert_eq!(p.len() as u32 + 1, workers(Scale::Small).processes());
    }

    #[test]
    fn stream_writers_share_one_numbering_across_streams() {
        for scale in [Scale::Small, Scale::Medium, Scale::Large] {
            let w = workers(scale);
            let p = worker_processes(&w);
            let writers: Vec<&Process> = p.iter().filter(|p| p.kind == "stream_writer").collect();
            let events = w.events_stream_writers as usize;
            for (idx, writer) in writers.iter().enumerate() {
                assert!(writer
                    .name
                    .starts_with(&format!("matrix-synapse-worker-stream-writer-{idx}-")));
                let expected = (idx >= events).then_some(STREAM_WRITER_PORT + idx as u16);
                assert_eq!(writer.port, expected, "{}", writer.name);
            }
            // No two web-serving processes share a port.
            let mut ports: Vec<u16> = p.iter().filter_map(|p| p.port).collect();
            let n = ports.len();
            ports.sort_unstable();
            ports.dedup();
            assert_eq!(ports.len(), n, "{scale:?}");
        }
    }

    #[test]
    fn backends_hold_every_webserving_worker_once_per_api() {
        for scale in [Scale::Small, Scale::Medium, Scale::Large] {
            let p = worker_processes(&workers(scale));
            let t = RoutingTable::build(&p, true);
            let client: Vec<&str> = t
                .backends
                .iter()
                .filter(|b| b.api == Api::Client)
                .flat_map(|b| b.servers.iter().map(|(n, _)| n.as_str()))
                .collect();
            let client_serving = p
                .iter()
                .filter(|p| p.port.is_some() && p.kind != "federation_reader")
                .count();
            assert_eq!(client.len(), client_serving, "{scale:?}");
            let sync = t
                .backends
                .iter()
                .find(|b| b.name == "synapse_sync_worker")
                .expect("sync back-end");
            assert_eq!(sync.servers.len() as u32, workers(scale).sync);
            assert_eq!(sync.balance.haproxy(), "hash var(txn.matrix_user)");
            assert_eq!(sync.maxconn, SYNC_MAXCONN);
            // Every route names a back-end that exists (or main).
            for r in &t.routes {
                assert!(
                    r.backend == r.api.main_backend()
                        || t.backends
                            .iter()
                            .any(|b| b.name == r.backend && b.api == r.api),
                    "{r:?}"
                );
                for re in &r.paths {
                    assert!(haproxy_word(re), "{re}");
                    assert!(re.starts_with("^/_"), "{re}");
                }
            }
            let mut names: Vec<&str> = t.backends.iter().map(|b| b.name.as_str()).collect();
            let n = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), n);
        }
    }

    /// (api, path, back-end) for the large example site.
    const LARGE_TABLE: &[(Api, &str, &str)] = &[
        (
            Api::Client,
            "/_matrix/client/v3/sync",
            "synapse_sync_worker",
        ),
        (
            Api::Client,
            "/_matrix/client/r0/sync",
            "synapse_sync_worker",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/rooms/%21abc%3Aexample.org/initialSync",
            "synapse_sync_worker",
        ),
        (
            Api::Client,
            "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync",
            "synapse_sync_worker",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/rooms/%21abc%3Aexample.org/send/m.room.message/t1",
            "synapse_room_worker",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/rooms/!abc:example.org/messages",
            "synapse_room_worker",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/join/%21abc%3Aexample.org",
            "synapse_room_worker",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/join/%23room%3Aexample.org",
            "synapse_client_reader",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/rooms/%21abc%3Aexample.org/typing/%40u%3Aexample.org",
            "synapse_stream_writer_typing",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/rooms/%21abc%3Aexample.org/receipt/m.read/%24e",
            "synapse_stream_writer_receipts",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/rooms/%21abc%3Aexample.org/read_markers",
            "synapse_stream_writer_receipts",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/user/%40u%3Aexample.org/rooms/%21abc%3Aexample.org/tags",
            "synapse_stream_writer_account_data",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/user/%40u%3Aexample.org/account_data/m.direct",
            "synapse_stream_writer_account_data",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/sendToDevice/m.room.encrypted/t2",
            "synapse_stream_writer_to_device",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/presence/%40u%3Aexample.org/status",
            "synapse_stream_writer_presence",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/pushrules/",
            "synapse_stream_writer_push_rules",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/keys/upload",
            "synapse_stream_writer_device_lists",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/devices",
            "synapse_stream_writer_device_lists",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/keys/query",
            "synapse_client_reader",
        ),
        (
            Api::Client,
            "/_matrix/client/versions",
            "synapse_client_reader",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/login",
            "synapse_client_reader",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/register/available",
            "synapse_client_reader",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/profile/%40u%3Aexample.org",
            "synapse_client_reader",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/user_directory/search",
            "synapse_user_dir",
        ),
        (
            Api::Client,
            "/_matrix/client/v1/media/download/example.org/abc",
            "synapse_media_repository",
        ),
        (
            Api::Client,
            "/_matrix/media/v3/upload",
            "synapse_media_repository",
        ),
        (
            Api::Client,
            "/_synapse/admin/v1/quarantine_media/example.org/abc",
            "synapse_stream_writer_quarantined_media_changes",
        ),
        (
            Api::Client,
            "/_synapse/admin/v1/media/example.org/abc",
            "synapse_media_repository",
        ),
        // Main only.
        (
            Api::Client,
            "/_matrix/client/v3/rooms/%21abc%3Aexample.org/upgrade",
            "synapse_main",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/rooms/%21abc%3Aexample.org/forget",
            "synapse_main",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/login/sso/redirect/oidc",
            "synapse_main",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/account/3pid/add",
            "synapse_main",
        ),
        (
            Api::Client,
            "/_matrix/client/v3/register/email/requestToken",
            "synapse_main",
        ),
        (
            Api::Client,
            "/_synapse/admin/v2/users/%40u%3Aexample.org",
            "synapse_main",
        ),
        (Api::Client, "/_synapse/client/rendezvous", "synapse_main"),
        (Api::Client, "/health", "synapse_main"),
        // Federation.
        (
            Api::Federation,
            "/_matrix/federation/v1/send/1234",
            "synapse_federation_reader_send",
        ),
        (
            Api::Federation,
            "/_matrix/federation/v1/state_ids/%21abc%3Aexample.org",
            "synapse_room_worker_federation",
        ),
        (
            Api::Federation,
            "/_matrix/federation/v1/get_missing_events/%21abc%3Aexample.org",
            "synapse_room_worker_federation",
        ),
        (
            Api::Federation,
            "/_matrix/federation/v1/make_join/%21abc%3Aexample.org/%40u%3Aother.org",
            "synapse_federation_reader",
        ),
        (
            Api::Federation,
            "/_matrix/federation/v2/send_join/%21abc%3Aexample.org/%24e",
            "synapse_federation_reader",
        ),
        (
            Api::Federation,
            "/_matrix/federation/v1/version",
            "synapse_federation_reader",
        ),
        (
            Api::Federation,
            "/_matrix/key/v2/query",
            "synapse_federation_reader",
        ),
        (
            Api::Federation,
            "/_matrix/key/v2/server",
            "synapse_main_federation",
        ),
        (
            Api::Federation,
            "/_matrix/federation/v1/openid/userinfo",
            "synapse_main_federation",
        ),
        (
            Api::Federation,
            "/_matrix/federation/v1/media/download/abc",
            "synapse_media_repository_federation",
        ),
        (
            Api::Federation,
            "/_matrix/media/v3/download/example.org/abc",
            "synapse_media_repository_federation",
        ),
    ];

    #[test]
    fn large_site_routes_each_endpoint_to_its_workers() {
        let t = RoutingTable::build(&worker_processes(&workers(Scale::Large)), true);
        for (api, path, backend) in LARGE_TABLE {
            assert_eq!(
                t.backend_for(*api, path, re_match),
                *backend,
                "{api:?} {path}"
            );
        }
    }

    #[test]
    fn without_a_type_its_endpoints_reach_main_or_the_next_route() {
        // Medium with room workers removed and no typing writer: room endpoints reach client
        // readers, typing reaches main (never a worker that cannot write the stream).
        let mut w = workers(Scale::Medium);
        w.room = 0;
        w.other_stream_writers[0].1 = 0;
        let t = RoutingTable::build(&worker_processes(&w), true);
        let send = "/_matrix/client/v3/rooms/%21abc%3Aexample.org/send/m.room.message/t1";
        assert_eq!(
            t.backend_for(Api::Client, send, re_match),
            "synapse_client_reader"
        );
        let typing = "/_matrix/client/v3/rooms/%21abc%3Aexample.org/typing/%40u%3Aexample.org";
        assert_eq!(t.backend_for(Api::Client, typing, re_match), "synapse_main");
        let messages = "/_matrix/client/v3/rooms/%21abc%3Aexample.org/messages";
        assert_eq!(
            t.backend_for(Api::Client, messages, re_match),
            "synapse_main"
        );
        assert_eq!(
            t.backend_for(
                Api::Federation,
                "/_matrix/federation/v1/state_ids/%21abc%3Aexample.org",
                re_match
            ),
            "synapse_federation_reader"
        );
        assert!(!t
            .backends
            .iter()
            .any(|b| b.name.starts_with("synapse_room")));
    }

    #[test]
    fn without_federation_no_federation_routes_exist() {
        let t = RoutingTable::build(&worker_processes(&workers(Scale::Small)), false);
        assert!(t.routes.iter().all(|r| r.api == Api::Client));
        assert!(t.backends.iter().all(|b| b.api == Api::Client));
    }

    #[test]
    fn every_scale_routes_the_same_endpoints_to_the_same_types() {
        // Small, medium and large differ in counts only, so every path of the table lands on
        // the same back-end at every scale.
        let tables: Vec<RoutingTable> = [Scale::Small, Scale::Medium, Scale::Large]
            .into_iter()
            .map(|s| RoutingTable::build(&worker_processes(&workers(s)), true))
            .collect();
        for (api, path, backend) in LARGE_TABLE {
            for t in &tables {
                assert_eq!(t.backend_for(*api, path, re_match), *backend, "{path}");
            }
        }
        let counts: Vec<usize> = tables
            .iter()
            .map(|t| t.backends.iter().map(|b| b.servers.len()).sum())
            .collect();
        // Client: room + sync + client reader + 8 writers + user dir + media; federation:
        // media + room + the federation reader twice (transactions, the rest).
        assert_eq!(counts, [16 + 4, 18 + 4, 21 + 5]);
    }

    #[test]
    fn well_known_documents() {
        assert_eq!(
            well_known_server("chat.z3r0d3v.com"),
            r#"{"m.server":"matrix.chat.z3r0d3v.com:8448"}"#
        );
        assert_eq!(
            well_known_client("chat.z3r0d3v.com"),
            r#"{"m.homeserver":{"base_url":"https://matrix.chat.z3r0d3v.com"}}"#
        );
        assert!(haproxy_word("^/_matrix/client/versions$"));
        assert!(!haproxy_word("^/a b"));
        assert!(!haproxy_word("^/a\\-b"));
    }
}
