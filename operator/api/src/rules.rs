//! CEL validation rules checked by the API server at admission.
//!
//! Each rule names the field it guards (`fieldPath`) and its message says what is
//! allowed, so `kubectl apply` tells the user exactly what to change. Rules that must
//! see `spec.type` live on the spec; rules about one field live on that field.
//! The Rust parser in [`crate::value`] implements the same formats; the tests in
//! `tests/tests/api.rs` check both against the real API server.

use kube::core::{Message, Reason, Rule};

/// One DNS label: letters, digits, `-` and `_` (service labels such as `_http`),
/// 1-63 characters, not starting or ending with `-`. RE2 syntax, no backslashes
/// so it survives CEL string quoting unchanged.
const LABEL: &str = "[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?";

/// A host name, optionally with a trailing dot; at most 253 characters without it.
fn host_pattern() -> String {
    format!("({LABEL}[.])*{LABEL}[.]?")
}

/// A CEL expression true when `expr` (a string) is a host name.
fn is_host(expr: &str) -> String {
    format!(
        "(size({expr}) <= 253 || (size({expr}) == 254 && {expr}.endsWith('.'))) && {expr}.matches('^{}$')",
        host_pattern()
    )
}

fn spec_rule(rule: String, field: &str, message: Message, reason: Reason) -> Rule {
    Rule::new(rule).field_path(field).message(message).reason(reason)
}

/// A per-type rule over `spec.values`: every value must satisfy `item_ok` (with the
/// value in `v.value`). The message is static: a message expression that lists the
/// offending values costs more than the API server's CEL budget allows for 128 values.
fn values_rule(types: &[&str], item_ok: &str, allowed: &str) -> Rule {
    let quoted = types.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
    spec_rule(
        format!("!(self.type in [{quoted}]) || !has(self.values) || self.values.all(v, {item_ok})"),
        ".values",
        Message::Message(format!("every value must be {allowed} for type {}", types.join(" or "))),
        Reason::FieldValueInvalid,
    )
}

pub fn value_source_given() -> Rule {
    Rule::new("has(self.podSelector) || has(self.serviceRef) || (has(self.values) && size(self.values) > 0)")
        .message(
            "spec needs podSelector (ready pods become values), serviceRef (a Service's endpoints) \
             or values (static endpoints), or several of them",
        )
        .reason(Reason::FieldValueRequired)
}

pub fn service_ref_only_for_address_types() -> Rule {
    spec_rule(
        "!has(self.serviceRef) || self.type in ['A', 'AAAA', 'SRV']".into(),
        ".serviceRef",
        Message::Expression(
            "'serviceRef is allowed only for types A, AAAA and SRV (an endpoint gives an address), not ' \
             + self.type"
                .into(),
        ),
        Reason::FieldValueForbidden,
    )
}

pub fn srv_service_needs_port() -> Rule {
    spec_rule(
        "self.type != 'SRV' || !has(self.serviceRef) || has(self.serviceRef.port)".into(),
        ".serviceRef.port",
        "serviceRef.port is required for SRV records: the Service port's name (e.g. http) or the endpoints' port number 1-65535".into(),
        Reason::FieldValueRequired,
    )
}

pub fn service_port_only_for_srv() -> Rule {
    spec_rule(
        "!has(self.serviceRef) || !has(self.serviceRef.port) || self.type == 'SRV'".into(),
        ".serviceRef.port",
        "serviceRef.port is allowed only for type SRV (A and AAAA records carry no port)".into(),
        Reason::FieldValueForbidden,
    )
}

pub fn pod_selector_only_for_address_types() -> Rule {
    spec_rule(
        "!has(self.podSelector) || self.type in ['A', 'AAAA', 'SRV']".into(),
        ".podSelector",
        Message::Expression(
            "'podSelector is allowed only for types A, AAAA and SRV (a pod gives an address), not ' \
             + self.type + '; list the targets in values instead'"
                .into(),
        ),
        Reason::FieldValueForbidden,
    )
}

pub fn srv_pods_need_port() -> Rule {
    spec_rule(
        "self.type != 'SRV' || !has(self.podSelector) || has(self.port)".into(),
        ".port",
        "port is required for SRV records backed by pods: a container port name (e.g. http) or number 1-65535".into(),
        Reason::FieldValueRequired,
    )
}

pub fn port_only_for_srv() -> Rule {
    spec_rule(
        "!has(self.port) || (self.type == 'SRV' && has(self.podSelector))".into(),
        ".port",
        "port is allowed only for type SRV with podSelector (static SRV values carry their own port)".into(),
        Reason::FieldValueForbidden,
    )
}

pub fn values_are_ipv4_for_a() -> Rule {
    values_rule(
        &["A"],
        "isIP(v.value) && ip(v.value).family() == 4",
        "IPv4 addresses (e.g. 192.0.2.10)",
    )
}

pub fn values_are_ipv6_for_aaaa() -> Rule {
    values_rule(
        &["AAAA"],
        "isIP(v.value) && ip(v.value).family() == 6",
        "IPv6 addresses (e.g. 2001:db8::10)",
    )
}

pub fn values_are_hostnames_for_cname_and_ns() -> Rule {
    values_rule(
        &["CNAME", "NS"],
        &is_host("v.value"),
        "host names (labels of letters, digits, '-' or '_', 1-63 characters each)",
    )
}

pub fn values_are_mx() -> Rule {
    let ok = format!(
        "v.value.matches('^[0-9]{{1,5}} +{}$') && int(v.value.split(' ')[0]) <= 65535",
        host_pattern()
    );
    values_rule(
        &["MX"],
        &ok,
        "\"PREFERENCE HOST\" with PREFERENCE 0-65535 (e.g. \"10 mail.example.com.\")",
    )
}

pub fn values_are_srv() -> Rule {
    let ok = format!(
        "v.value.matches('^[0-9]{{1,5}} +[0-9]{{1,5}} +[0-9]{{1,5}} +{}$') && \
         v.value.split(' ').filter(f, f != '').all(f, !f.matches('^[0-9]+$') || int(f) <= 65535)",
        host_pattern()
    );
    values_rule(
        &["SRV"],
        &ok,
        "\"PRIORITY WEIGHT PORT HOST\" with numbers 0-65535 (e.g. \"10 5 8080 web.example.com.\")",
    )
}

pub fn values_are_txt() -> Rule {
    // TXT takes any text; only the length (bounded by the schema) matters. The rule
    // exists so that every type has exactly one format rule, and rejects empty text.
    values_rule(&["TXT"], "size(v.value) > 0", "non-empty text")
}

pub fn cname_has_one_value_source() -> Rule {
    // A name can hold only one CNAME, so each answer carries one target picked from
    // the healthy static values; pods have no host name to point at.
    spec_rule(
        "self.type != 'CNAME' || (!has(self.podSelector) && has(self.values))".into(),
        ".values",
        "type CNAME takes its targets from values only (one healthy target is answered per query)".into(),
        Reason::FieldValueInvalid,
    )
}

pub fn name_is_fqdn() -> Rule {
    Rule::new(format!(
        "(size(self) <= 253 || (size(self) == 254 && self.endsWith('.'))) && self.matches('^({LABEL}[.])+{LABEL}[.]?$')"
    ))
    .message(
        "name must be a fully qualified DNS name such as web.shop.example.internal. \
         (at least two labels of letters, digits, '-' or '_', 1-63 characters each; no wildcards)",
    )
    .reason(Reason::FieldValueInvalid)
}

pub fn port_is_name_or_number() -> Rule {
    Rule::new(
        "type(self) == int ? (self >= 1 && self <= 65535) : \
         (self.matches('^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$') && self.matches('[a-z]'))",
    )
    .message(
        "port must be a number 1-65535 or a container port name \
         (1-15 lowercase letters, digits or '-', with at least one letter)",
    )
    .reason(Reason::FieldValueInvalid)
}

pub fn service_port_is_name_or_number() -> Rule {
    Rule::new(
        "type(self) == int ? (self >= 1 && self <= 65535) : \
         self.matches('^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$')",
    )
    .message("serviceRef.port must be a number 1-65535 or a Service port name (a DNS label: 1-63 lowercase letters, digits or '-')")
    .reason(Reason::FieldValueInvalid)
}

pub fn set_identifiers_unique() -> Rule {
    Rule::new(
        "self.all(a, !has(a.setIdentifier) || \
         self.exists_one(b, has(b.setIdentifier) && b.setIdentifier == a.setIdentifier))",
    )
    .message("setIdentifier must be unique within values")
    .reason(Reason::FieldValueInvalid) // "Duplicate" would drop the message
}

pub fn values_unique() -> Rule {
    Rule::new("self.all(a, self.exists_one(b, b.value == a.value))")
        .message("each value may appear only once in values (a repeated endpoint would get more traffic)")
        .reason(Reason::FieldValueInvalid) // "Duplicate" would drop the message
}

pub fn http_fields_only_for_http() -> Rule {
    Rule::new("self.type != 'TCP' || (!has(self.path) && !has(self.host) && !has(self.searchString))")
        .message("healthCheck.path, host and searchString apply only to HTTP and HTTPS checks, not TCP")
        .reason(Reason::FieldValueForbidden)
}
