//! Every typed endpoint builds a request from a static [`Endpoint`] description, so the
//! full set of endpoints and parameters the client can send is listed in [`catalogue`] and
//! can be checked against the official API schema.

use std::fmt::Write as _;

/// HTTP method of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
}

impl Method {
    /// Upper-case name as in the schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }

    pub(crate) fn to_http(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Delete => reqwest::Method::DELETE,
        }
    }

    /// Parameters go to the query string (GET, DELETE) or to a form body (POST, PUT).
    pub(crate) fn params_in_query(self) -> bool {
        matches!(self, Method::Get | Method::Delete)
    }
}

/// The JSON-schema kind of a parameter we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamKind {
    /// `string` (including property strings and lists)
    String,
    /// `integer`
    Integer,
    /// `number`
    Number,
    /// `boolean` (sent as `0`/`1`)
    Boolean,
}

impl ParamKind {
    /// Whether a schema type accepts a value of this kind.
    pub fn compatible_with(self, schema_type: &str) -> bool {
        match self {
            ParamKind::String => schema_type == "string",
            ParamKind::Integer => matches!(schema_type, "integer" | "number"),
            ParamKind::Number => schema_type == "number",
            ParamKind::Boolean => schema_type == "boolean",
        }
    }
}

/// One endpoint the client can call: method, path template and every parameter it can send.
///
/// Path placeholders (`{node}`) are parameters too. Indexed keys are declared the way the schema
/// does (`net[n]`) and match `net0`, `net1`, ...
#[derive(Debug)]
pub struct Endpoint {
    /// HTTP method.
    pub method: Method,
    /// Path template below `/api2/json`.
    pub path: &'static str,
    /// Body or query parameters with their kinds.
    pub params: &'static [(&'static str, ParamKind)],
    /// Safe to retry (GET, or a write whose effect does not change when repeated).
    pub idempotent: bool,
}

impl Endpoint {
    /// Placeholder names in the path template, in order.
    pub fn path_params(&self) -> impl Iterator<Item = &'static str> {
        let p: &'static str = self.path;
        p.split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
    }

    /// Whether `name` is a declared body/query parameter (with `x[n]` matching `x0`, `x12`).
    pub fn declares(&self, name: &str) -> bool {
        self.params.iter().any(|(p, _)| param_name_matches(p, name))
    }
}

/// Does the declared name (possibly `key[n]`) match the concrete name?
pub fn param_name_matches(declared: &str, concrete: &str) -> bool {
    match declared.strip_suffix("[n]") {
        Some(prefix) => concrete
            .strip_prefix(prefix)
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())),
        None => declared == concrete,
    }
}

/// Highest index PVE accepts for an indexed VM config key (`net[n]` -> 31), by its prefix.
/// `None` for a prefix that is not indexed or not known.
pub fn vm_config_index_max(prefix: &str) -> Option<u32> {
    Some(match prefix {
        "net" | "ipconfig" => 31,
        "scsi" => 30,
        "virtio" | "hostpci" => 15,
        "ide" | "serial" => 3,
        "sata" => 5,
        "unused" => 255,
        "usb" => 13,
        "parallel" => 2,
        "numa" => 7,
        "virtiofs" => 9,
        _ => return None,
    })
}

/// Strict form of [`param_name_matches`] for VM config keys: `x[n]` matches `x0`..`xMAX` with
/// PVE's index range ([`vm_config_index_max`]) and no leading zeros.
pub fn vm_config_key_matches(declared: &str, concrete: &str) -> bool {
    match declared.strip_suffix("[n]") {
        Some(prefix) => {
            let Some(d) = concrete.strip_prefix(prefix) else {
                return false;
            };
            let canonical = !d.is_empty()
                && d.bytes().all(|b| b.is_ascii_digit())
                && (d == "0" || !d.starts_with('0'));
            canonical
                && d.parse::<u32>()
                    .is_ok_and(|i| vm_config_index_max(prefix).is_some_and(|max| i <= max))
        }
        None => declared == concrete,
    }
}

/// A ready request: endpoint, rendered path and encoded parameters.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) endpoint: &'static Endpoint,
    pub(crate) path: String,
    pub(crate) params: Vec<(String, String)>,
}

fn encode_segment(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'@' | b'!')
        {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

impl Request {
    /// Render the template with `args` (in placeholder order). Values are percent-encoded, so a
    /// `/` in a volume id stays inside its segment.
    pub(crate) fn new(endpoint: &'static Endpoint, args: &[&str]) -> Self {
        debug_assert!(
            catalogue().iter().any(|e| std::ptr::eq(*e, endpoint)),
            "endpoint {} {} missing from catalogue()",
            endpoint.method.as_str(),
            endpoint.path
        );
        let mut path = String::with_capacity(endpoint.path.len() + 32);
        let mut args = args.iter();
        for seg in endpoint.path.split('/').skip(1) {
            path.push('/');
            if seg.starts_with('{') {
                let a = args
                    .next()
                    .expect("path argument count matches the template");
                encode_segment(&mut path, a);
            } else {
                path.push_str(seg);
            }
        }
        debug_assert!(
            args.next().is_none(),
            "too many path arguments for {}",
            endpoint.path
        );
        Request {
            endpoint,
            path,
            params: Vec::new(),
        }
    }

    /// Add a parameter (must be declared by the endpoint; checked in debug builds and tests).
    pub(crate) fn param(mut self, name: &str, value: impl ParamValue) -> Self {
        self.push(name, value);
        self
    }

    pub(crate) fn push(&mut self, name: &str, value: impl ParamValue) {
        debug_assert!(
            self.endpoint.declares(name),
            "parameter `{name}` not declared for {} {}",
            self.endpoint.method.as_str(),
            self.endpoint.path
        );
        self.params.push((name.to_owned(), value.encode()));
    }

    /// Add a parameter when present.
    pub(crate) fn opt(mut self, name: &str, value: Option<impl ParamValue>) -> Self {
        if let Some(v) = value {
            self.push(name, v);
        }
        self
    }
}

/// Encoding of a parameter value on the wire.
pub(crate) trait ParamValue {
    fn encode(&self) -> String;
}

impl ParamValue for bool {
    fn encode(&self) -> String {
        if *self { "1".into() } else { "0".into() }
    }
}
impl ParamValue for &str {
    fn encode(&self) -> String {
        (*self).to_owned()
    }
}
impl ParamValue for String {
    fn encode(&self) -> String {
        self.clone()
    }
}
impl ParamValue for &String {
    fn encode(&self) -> String {
        (*self).clone()
    }
}
macro_rules! num_param {
    ($($t:ty),*) => {$(
        impl ParamValue for $t {
            fn encode(&self) -> String { self.to_string() }
        }
    )*};
}
num_param!(u8, u16, u32, u64, i32, i64, f64);
impl ParamValue for crate::types::VmId {
    fn encode(&self) -> String {
        self.to_string()
    }
}

/// A parameter list: `["name": Kind, ...]`, or the name of a shared list.
macro_rules! params {
    ([ $( $p:literal : $k:ident ),* $(,)? ]) => {
        &[ $( ($p, ParamKind::$k) ),* ]
    };
    ($shared:ident) => {
        $shared
    };
}

macro_rules! endpoints {
    ($( $(#[$m:meta])* $name:ident = $method:ident $path:literal, idempotent = $idem:literal, $params:tt; )*) => {
        $(
            $(#[$m])*
            pub(crate) static $name: Endpoint = Endpoint {
                method: Method::$method,
                path: $path,
                params: params!($params),
                idempotent: $idem,
            };
        )*
        /// Every endpoint the typed API can call, with every parameter it can send.
        pub fn catalogue() -> &'static [&'static Endpoint] {
            static ALL: &[&Endpoint] = &[ $( &$name ),* ];
            ALL
        }
    };
}

/// Parameters of `PUT` and `POST /nodes/{node}/qemu/{vmid}/config`: the same set.
const QEMU_CONFIG_PARAMS: &[(&str, ParamKind)] = params!([
    "name": String, "cores": Integer, "sockets": Integer, "memory": String, "description": String,
    "onboot": Boolean, "agent": String, "nameserver": String, "searchdomain": String,
    "ciuser": String, "cipassword": String, "net[n]": String, "ipconfig[n]": String,
    "scsi[n]": String, "virtio[n]": String, "ide[n]": String, "sata[n]": String,
    "delete": String, "digest": String, "skiplock": Boolean,
    // Keys without a typed setter, sent by `ConfigUpdate::set_other`.
    "acpi": Boolean, "affinity": String, "allow-ksm": Boolean, "amd-sev": String, "audio0": String,
    "autostart": Boolean, "balloon": Integer, "bios": String, "boot": String, "bootdisk": String,
    "cdrom": String, "cicustom": String, "citype": String, "ciupgrade": Boolean, "cpu": String,
    "cpulimit": Number, "cpuunits": Integer, "efidisk0": String, "freeze": Boolean,
    "hostpci[n]": String, "hotplug": String, "hugepages": String, "intel-tdx": String,
    "ivshmem": String, "keephugepages": Boolean, "keyboard": String, "kvm": Boolean,
    "localtime": Boolean, "machine": String, "migrate_downtime": Number, "migrate_speed": Integer,
    "numa": Boolean, "numa[n]": String, "ostype": String, "parallel[n]": String,
    "protection": Boolean, "reboot": Boolean, "rng0": String, "scsihw": String, "serial[n]": String,
    "shares": Integer, "smbios1": String, "smp": Integer, "spice_enhancements": String,
    "sshkeys": String, "startdate": String, "startup": String, "tablet": Boolean, "tags": String,
    "tdf": Boolean, "template": Boolean, "tpmstate0": String, "unused[n]": String, "usb[n]": String,
    "vcpus": Integer, "vga": String, "virtiofs[n]": String, "vmgenid": String,
    "vmstatestorage": String, "watchdog": String
]);

/// Parameters of `POST .../firewall/rules` (cluster, VM and security group alike).
const FW_RULE_CREATE_PARAMS: &[(&str, ParamKind)] = params!([
    "type": String, "action": String, "macro": String, "iface": String, "source": String,
    "dest": String, "proto": String, "sport": String, "dport": String, "icmp-type": String,
    "log": String, "enable": Integer, "comment": String, "pos": Integer, "digest": String
]);

/// Parameters of `PUT .../firewall/rules/{pos}` (cluster, VM and security group alike).
const FW_RULE_UPDATE_PARAMS: &[(&str, ParamKind)] = params!([
    "type": String, "action": String, "macro": String, "iface": String, "source": String,
    "dest": String, "proto": String, "sport": String, "dport": String, "icmp-type": String,
    "log": String, "enable": Integer, "comment": String, "moveto": Integer, "delete": String,
    "digest": String
]);

endpoints! {
    ACCESS_TICKET = Post "/access/ticket", idempotent = false,
        ["username": String, "password": String, "new-format": Boolean, "tfa-challenge": String];
    VERSION = Get "/version", idempotent = true, [];
    CLUSTER_RESOURCES = Get "/cluster/resources", idempotent = true, ["type": String];
    NODES = Get "/nodes", idempotent = true, [];

    QEMU_STATUS = Get "/nodes/{node}/qemu/{vmid}/status/current", idempotent = true, [];
    QEMU_START = Post "/nodes/{node}/qemu/{vmid}/status/start", idempotent = false, ["timeout": Integer];
    QEMU_SHUTDOWN = Post "/nodes/{node}/qemu/{vmid}/status/shutdown", idempotent = false,
        ["timeout": Integer, "forceStop": Boolean, "keepActive": Boolean];
    QEMU_STOP = Post "/nodes/{node}/qemu/{vmid}/status/stop", idempotent = false,
        ["timeout": Integer, "overrule-shutdown": Boolean];
    QEMU_REBOOT = Post "/nodes/{node}/qemu/{vmid}/status/reboot", idempotent = false, ["timeout": Integer];
    QEMU_RESET = Post "/nodes/{node}/qemu/{vmid}/status/reset", idempotent = false, [];

    QEMU_CONFIG_GET = Get "/nodes/{node}/qemu/{vmid}/config", idempotent = true,
        ["current": Boolean, "snapshot": String];
    QEMU_PENDING = Get "/nodes/{node}/qemu/{vmid}/pending", idempotent = true, [];
    QEMU_CONFIG_PUT = Put "/nodes/{node}/qemu/{vmid}/config", idempotent = false, QEMU_CONFIG_PARAMS;
    QEMU_CONFIG_POST = Post "/nodes/{node}/qemu/{vmid}/config", idempotent = false, QEMU_CONFIG_PARAMS;
    QEMU_RESIZE = Put "/nodes/{node}/qemu/{vmid}/resize", idempotent = false,
        ["disk": String, "size": String, "digest": String];
    QEMU_CLONE = Post "/nodes/{node}/qemu/{vmid}/clone", idempotent = false, [
        "newid": Integer, "name": String, "description": String, "full": Boolean, "target": String,
        "storage": String, "format": String, "snapname": String, "pool": String, "bwlimit": Integer
    ];
    QEMU_DELETE = Delete "/nodes/{node}/qemu/{vmid}", idempotent = false,
        ["purge": Boolean, "destroy-unreferenced-disks": Boolean, "skiplock": Boolean];
    QEMU_CREATE = Post "/nodes/{node}/qemu", idempotent = false, [
        "vmid": Integer, "archive": String, "force": Boolean, "storage": String, "unique": Boolean,
        "start": Boolean, "bwlimit": Integer, "pool": String,
        "name": String, "cores": Integer, "sockets": Integer, "memory": String, "description": String,
        "onboot": Boolean, "agent": String, "nameserver": String, "searchdomain": String,
        "ciuser": String, "cipassword": String, "net[n]": String, "ipconfig[n]": String,
        "scsi[n]": String, "virtio[n]": String, "ide[n]": String, "sata[n]": String,
        // Keys without a typed setter, sent by `ConfigUpdate::set_other`.
        "acpi": Boolean, "affinity": String, "allow-ksm": Boolean, "amd-sev": String, "audio0": String,
        "autostart": Boolean, "balloon": Integer, "bios": String, "boot": String, "bootdisk": String,
        "cdrom": String, "cicustom": String, "citype": String, "ciupgrade": Boolean, "cpu": String,
        "cpulimit": Number, "cpuunits": Integer, "efidisk0": String, "freeze": Boolean,
        "hostpci[n]": String, "hotplug": String, "hugepages": String, "intel-tdx": String,
        "ivshmem": String, "keephugepages": Boolean, "keyboard": String, "kvm": Boolean,
        "localtime": Boolean, "machine": String, "migrate_downtime": Number, "migrate_speed": Integer,
        "numa": Boolean, "numa[n]": String, "ostype": String, "parallel[n]": String,
        "protection": Boolean, "reboot": Boolean, "rng0": String, "scsihw": String, "serial[n]": String,
        "shares": Integer, "smbios1": String, "smp": Integer, "spice_enhancements": String,
        "sshkeys": String, "startdate": String, "startup": String, "tablet": Boolean, "tags": String,
        "tdf": Boolean, "template": Boolean, "tpmstate0": String, "unused[n]": String, "usb[n]": String,
        "vcpus": Integer, "vga": String, "virtiofs[n]": String, "vmgenid": String,
        "vmstatestorage": String, "watchdog": String
    ];

    SNAPSHOT_LIST = Get "/nodes/{node}/qemu/{vmid}/snapshot", idempotent = true, [];
    SNAPSHOT_CREATE = Post "/nodes/{node}/qemu/{vmid}/snapshot", idempotent = false,
        ["snapname": String, "description": String, "vmstate": Boolean];
    SNAPSHOT_DELETE = Delete "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}", idempotent = false,
        ["force": Boolean];
    SNAPSHOT_ROLLBACK = Post "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/rollback", idempotent = false,
        ["start": Boolean];
    SNAPSHOT_CONFIG_GET = Get "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/config", idempotent = true, [];
    SNAPSHOT_CONFIG_PUT = Put "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/config", idempotent = true,
        ["description": String];

    VZDUMP = Post "/nodes/{node}/vzdump", idempotent = false, [
        "vmid": String, "storage": String, "mode": String, "compress": String,
        "notes-template": String, "protected": Boolean, "remove": Boolean
    ];
    STORAGE_LIST = Get "/nodes/{node}/storage", idempotent = true, ["content": String, "enabled": Boolean];
    STORAGE_CONTENT = Get "/nodes/{node}/storage/{storage}/content", idempotent = true,
        ["content": String, "vmid": Integer];
    STORAGE_CONTENT_DELETE = Delete "/nodes/{node}/storage/{storage}/content/{volume}", idempotent = false,
        ["delay": Integer];
    STORAGE_CONTENT_UPDATE = Put "/nodes/{node}/storage/{storage}/content/{volume}", idempotent = true,
        ["notes": String, "protected": Boolean];

    VNCPROXY = Post "/nodes/{node}/qemu/{vmid}/vncproxy", idempotent = false,
        ["websocket": Boolean, "generate-password": Boolean];
    VNCWEBSOCKET = Get "/nodes/{node}/qemu/{vmid}/vncwebsocket", idempotent = true,
        ["port": Integer, "vncticket": String];
    RRDDATA = Get "/nodes/{node}/qemu/{vmid}/rrddata", idempotent = true,
        ["timeframe": String, "cf": String];

    CLUSTER_FW_OPTIONS_GET = Get "/cluster/firewall/options", idempotent = true, [];
    CLUSTER_FW_OPTIONS_PUT = Put "/cluster/firewall/options", idempotent = true, [
        "enable": Integer, "policy_in": String, "policy_out": String, "ebtables": Boolean,
        "delete": String, "digest": String
    ];
    VM_FW_OPTIONS_GET = Get "/nodes/{node}/qemu/{vmid}/firewall/options", idempotent = true, [];
    VM_FW_OPTIONS_PUT = Put "/nodes/{node}/qemu/{vmid}/firewall/options", idempotent = true, [
        "enable": Boolean, "policy_in": String, "policy_out": String, "dhcp": Boolean, "ndp": Boolean,
        "radv": Boolean, "macfilter": Boolean, "ipfilter": Boolean, "log_level_in": String,
        "log_level_out": String, "delete": String, "digest": String
    ];

    CLUSTER_FW_RULES = Get "/cluster/firewall/rules", idempotent = true, [];
    CLUSTER_FW_RULE_GET = Get "/cluster/firewall/rules/{pos}", idempotent = true, [];
    CLUSTER_FW_RULE_CREATE = Post "/cluster/firewall/rules", idempotent = false, FW_RULE_CREATE_PARAMS;
    CLUSTER_FW_RULE_UPDATE = Put "/cluster/firewall/rules/{pos}", idempotent = false, FW_RULE_UPDATE_PARAMS;
    CLUSTER_FW_RULE_DELETE = Delete "/cluster/firewall/rules/{pos}", idempotent = false, ["digest": String];
    VM_FW_RULES = Get "/nodes/{node}/qemu/{vmid}/firewall/rules", idempotent = true, [];
    VM_FW_RULE_GET = Get "/nodes/{node}/qemu/{vmid}/firewall/rules/{pos}", idempotent = true, [];
    VM_FW_RULE_CREATE = Post "/nodes/{node}/qemu/{vmid}/firewall/rules", idempotent = false, FW_RULE_CREATE_PARAMS;
    VM_FW_RULE_UPDATE = Put "/nodes/{node}/qemu/{vmid}/firewall/rules/{pos}", idempotent = false, FW_RULE_UPDATE_PARAMS;
    VM_FW_RULE_DELETE = Delete "/nodes/{node}/qemu/{vmid}/firewall/rules/{pos}", idempotent = false,
        ["digest": String];

    FW_GROUPS = Get "/cluster/firewall/groups", idempotent = true, [];
    FW_GROUP_CREATE = Post "/cluster/firewall/groups", idempotent = false,
        ["group": String, "comment": String, "rename": String, "digest": String];
    FW_GROUP_DELETE = Delete "/cluster/firewall/groups/{group}", idempotent = false, [];
    FW_GROUP_RULES = Get "/cluster/firewall/groups/{group}", idempotent = true, [];
    FW_GROUP_RULE_GET = Get "/cluster/firewall/groups/{group}/{pos}", idempotent = true, [];
    FW_GROUP_RULE_CREATE = Post "/cluster/firewall/groups/{group}", idempotent = false, FW_RULE_CREATE_PARAMS;
    FW_GROUP_RULE_UPDATE = Put "/cluster/firewall/groups/{group}/{pos}", idempotent = false, FW_RULE_UPDATE_PARAMS;
    FW_GROUP_RULE_DELETE = Delete "/cluster/firewall/groups/{group}/{pos}", idempotent = false,
        ["digest": String];

    CLUSTER_FW_IPSETS = Get "/cluster/firewall/ipset", idempotent = true, [];
    CLUSTER_FW_IPSET_CREATE = Post "/cluster/firewall/ipset", idempotent = false,
        ["name": String, "comment": String];
    CLUSTER_FW_IPSET_DELETE = Delete "/cluster/firewall/ipset/{name}", idempotent = false, ["force": Boolean];
    CLUSTER_FW_IPSET_ENTRIES = Get "/cluster/firewall/ipset/{name}", idempotent = true, [];
    CLUSTER_FW_IPSET_ADD = Post "/cluster/firewall/ipset/{name}", idempotent = false,
        ["cidr": String, "nomatch": Boolean, "comment": String];
    CLUSTER_FW_IPSET_UPDATE = Put "/cluster/firewall/ipset/{name}/{cidr}", idempotent = true,
        ["nomatch": Boolean, "comment": String, "digest": String];
    CLUSTER_FW_IPSET_REMOVE = Delete "/cluster/firewall/ipset/{name}/{cidr}", idempotent = false,
        ["digest": String];
    VM_FW_IPSETS = Get "/nodes/{node}/qemu/{vmid}/firewall/ipset", idempotent = true, [];
    VM_FW_IPSET_CREATE = Post "/nodes/{node}/qemu/{vmid}/firewall/ipset", idempotent = false,
        ["name": String, "comment": String];
    VM_FW_IPSET_DELETE = Delete "/nodes/{node}/qemu/{vmid}/firewall/ipset/{name}", idempotent = false,
        ["force": Boolean];
    VM_FW_IPSET_ENTRIES = Get "/nodes/{node}/qemu/{vmid}/firewall/ipset/{name}", idempotent = true, [];
    VM_FW_IPSET_ADD = Post "/nodes/{node}/qemu/{vmid}/firewall/ipset/{name}", idempotent = false,
        ["cidr": String, "nomatch": Boolean, "comment": String];
    VM_FW_IPSET_UPDATE = Put "/nodes/{node}/qemu/{vmid}/firewall/ipset/{name}/{cidr}", idempotent = true,
        ["nomatch": Boolean, "comment": String, "digest": String];
    VM_FW_IPSET_REMOVE = Delete "/nodes/{node}/qemu/{vmid}/firewall/ipset/{name}/{cidr}", idempotent = false,
        ["digest": String];

    CLUSTER_FW_ALIASES = Get "/cluster/firewall/aliases", idempotent = true, [];
    CLUSTER_FW_ALIAS_CREATE = Post "/cluster/firewall/aliases", idempotent = false,
        ["name": String, "cidr": String, "comment": String];
    CLUSTER_FW_ALIAS_UPDATE = Put "/cluster/firewall/aliases/{name}", idempotent = true,
        ["cidr": String, "comment": String, "digest": String];
    CLUSTER_FW_ALIAS_DELETE = Delete "/cluster/firewall/aliases/{name}", idempotent = false, ["digest": String];
    VM_FW_ALIASES = Get "/nodes/{node}/qemu/{vmid}/firewall/aliases", idempotent = true, [];
    VM_FW_ALIAS_CREATE = Post "/nodes/{node}/qemu/{vmid}/firewall/aliases", idempotent = false,
        ["name": String, "cidr": String, "comment": String];
    VM_FW_ALIAS_UPDATE = Put "/nodes/{node}/qemu/{vmid}/firewall/aliases/{name}", idempotent = true,
        ["cidr": String, "comment": String, "digest": String];
    VM_FW_ALIAS_DELETE = Delete "/nodes/{node}/qemu/{vmid}/firewall/aliases/{name}", idempotent = false,
        ["digest": String];
    CLUSTER_FW_REFS = Get "/cluster/firewall/refs", idempotent = true, ["type": String];
    VM_FW_REFS = Get "/nodes/{node}/qemu/{vmid}/firewall/refs", idempotent = true, ["type": String];

    AGENT_PING = Post "/nodes/{node}/qemu/{vmid}/agent/ping", idempotent = true, [];
    AGENT_NET = Get "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces", idempotent = true, [];
    AGENT_SET_PASSWORD = Post "/nodes/{node}/qemu/{vmid}/agent/set-user-password", idempotent = true,
        ["username": String, "password": String, "crypted": Boolean];
    CLOUDINIT_REGENERATE = Put "/nodes/{node}/qemu/{vmid}/cloudinit", idempotent = true, [];
    CLOUDINIT_DUMP = Get "/nodes/{node}/qemu/{vmid}/cloudinit/dump", idempotent = true, ["type": String];

    TASK_STATUS = Get "/nodes/{node}/tasks/{upid}/status", idempotent = true, [];
    TASK_LOG = Get "/nodes/{node}/tasks/{upid}/log", idempotent = true, ["start": Integer, "limit": Integer];
    TASK_LIST = Get "/nodes/{node}/tasks", idempotent = true, [
        "vmid": Integer, "limit": Integer, "start": Integer, "source": String, "typefilter": String,
        "errors": Boolean
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexed_names() {
        assert!(param_name_matches("net[n]", "net0"));
        assert!(param_name_matches("net[n]", "net31"));
        assert!(!param_name_matches("net[n]", "net"));
        assert!(!param_name_matches("net[n]", "netx"));
        assert!(!param_name_matches("net", "net0"));
    }

    #[test]
    fn strict_vm_config_keys() {
        assert!(vm_config_key_matches("unused[n]", "unused3"));
        assert!(vm_config_key_matches("unused[n]", "unused255"));
        assert!(!vm_config_key_matches("unused[n]", "unused256"));
        assert!(vm_config_key_matches("virtio[n]", "virtio15"));
        assert!(!vm_config_key_matches("virtio[n]", "virtio16"));
        assert!(!vm_config_key_matches("virtio[n]", "virtio07"));
        assert!(vm_config_key_matches("virtio[n]", "virtio0"));
        assert!(!vm_config_key_matches("virtio[n]", "virtio"));
        assert!(!vm_config_key_matches("bogus[n]", "bogus1"));
        assert!(vm_config_key_matches("tags", "tags"));
        // Every indexed key the config endpoints declare has a known range.
        for ep in [&QEMU_CONFIG_PUT, &QEMU_CONFIG_POST, &QEMU_CREATE] {
            for (p, _) in ep.params {
                if let Some(prefix) = p.strip_suffix("[n]") {
                    assert!(vm_config_index_max(prefix).is_some(), "no range for {p}");
                }
            }
        }
    }

    #[test]
    fn path_rendering_encodes_segments() {
        let r = Request::new(
            &STORAGE_CONTENT_DELETE,
            &["pve", "local", "local:backup/vzdump a.vma"],
        );
        assert_eq!(
            r.path,
            "/nodes/pve/storage/local/content/local:backup%2Fvzdump%20a.vma"
        );
    }
}
