//! `restClientConfig`: per-session, per-method hook settings returned by the backend's `connect`.
//!
//! Shape (spec/rest-hooks.md §3): an object keyed by hook method name; each value holds up to five
//! string fields. Absent methods and absent fields take the defaults `restOnError=LOG`,
//! `restPolicy=NOTIFY`, empty lists. A value that cannot be understood falls back to its default
//! and produces one [`ConfigWarning`]; the caller logs it once, naming the session.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::catalogue::HookMethod;

/// What to do when the backend interaction fails (non-200, unreachable, timeout, bad body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RestOnError {
    /// Abort (or report) as the seed's table says for the method's kind.
    Fail,
    /// Log and carry on.
    #[default]
    Log,
}

impl RestOnError {
    pub const ALL: [RestOnError; 2] = [RestOnError::Fail, RestOnError::Log];
}

/// How the backend's answer is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RestPolicy {
    /// Call the backend; its answer never changes anything.
    #[default]
    Notify,
    /// Call the backend; copy the `restOverwrite` fields from its answer.
    Overwrite,
    /// Do not call the backend; use the data as it is.
    Disable,
}

impl RestPolicy {
    pub const ALL: [RestPolicy; 3] = [RestPolicy::Notify, RestPolicy::Overwrite, RestPolicy::Disable];
}

/// Settings of one method.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MethodConfig {
    /// Fields stripped before the body goes to the backend.
    pub rest_exclude: FieldList,
    /// Fields stripped before the data goes to the client.
    pub client_exclude: FieldList,
    pub rest_on_error: RestOnError,
    pub rest_policy: RestPolicy,
    /// Fields copied from the backend's answer under [`RestPolicy::Overwrite`].
    pub rest_overwrite: FieldList,
}

/// A parsed comma-separated list of field names (`"a, b,,c"` -> `[a, b, c]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldList(Box<[Box<str>]>);

impl FieldList {
    pub fn parse(s: &str) -> FieldList {
        FieldList(s.split(',').map(str::trim).filter(|f| !f.is_empty()).map(Box::from).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Linear scan: these lists hold a handful of names, where a scan beats hashing.
    pub fn contains(&self, field: &str) -> bool {
        self.0.iter().any(|f| &**f == field)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|f| &**f)
    }
}

/// A problem found while reading `restClientConfig`; the offending value was replaced by its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The `restClientConfig` key (method name as the backend wrote it).
    pub method: String,
    pub field: &'static str,
    pub problem: String,
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "restClientConfig.{}.{}: {}", self.method, self.field, self.problem)
    }
}

/// The whole `restClientConfig` of a session, indexed by method.
#[derive(Debug, Clone, Default)]
pub struct RestClientConfig {
    per_method: Vec<Option<Arc<MethodConfig>>>,
}

static DEFAULT_METHOD_CONFIG: std::sync::LazyLock<MethodConfig> = std::sync::LazyLock::new(MethodConfig::default);

impl RestClientConfig {
    /// The settings for `method` (defaults when the backend did not name it).
    pub fn method(&self, method: HookMethod) -> &MethodConfig {
        self.per_method.get(method.index()).and_then(|c| c.as_deref()).unwrap_or(&DEFAULT_METHOD_CONFIG)
    }

    /// Reads `restClientConfig` from a connect response value (the value of that key).
    ///
    /// Never fails: anything not understood is replaced by its default and reported in the
    /// returned warnings. Unknown method names are reported too (they would otherwise silently
    /// do nothing, which is the kind of mistake a backend author wants to hear about).
    pub fn parse(value: Option<&Value>) -> (RestClientConfig, Vec<ConfigWarning>) {
        let mut cfg = RestClientConfig { per_method: vec![None; HookMethod::COUNT] };
        let mut warnings = Vec::new();
        let obj = match value {
            None | Some(Value::Null) => return (cfg, warnings),
            Some(Value::Object(o)) => o,
            Some(other) => {
                warnings.push(ConfigWarning {
                    method: String::new(),
                    field: "restClientConfig",
                    problem: format!("expected an object, got {}; using defaults", kind_of(other)),
                });
                return (cfg, warnings);
            }
        };
        for (name, entry) in obj {
            let Some(method) = HookMethod::from_name(name) else {
                warnings.push(ConfigWarning {
                    method: name.clone(),
                    field: "method",
                    problem: "unknown hook method name; entry ignored".into(),
                });
                continue;
            };
            let Value::Object(entry) = entry else {
                warnings.push(ConfigWarning {
                    method: name.clone(),
                    field: "method",
                    problem: format!("expected an object, got {}; using defaults", kind_of(entry)),
                });
                continue;
            };
            let mc = parse_method(name, entry, &mut warnings);
            cfg.per_method[method.index()] = Some(Arc::new(mc));
        }
        (cfg, warnings)
    }
}

fn parse_method(name: &str, entry: &Map<String, Value>, warnings: &mut Vec<ConfigWarning>) -> MethodConfig {
    let mut mc = MethodConfig::default();
    let mut warn = |field: &'static str, problem: String| {
        warnings.push(ConfigWarning { method: name.to_string(), field, problem })
    };
    for (key, value) in entry {
        let field: &'static str = match key.as_str() {
            "restExclude" => "restExclude",
            "clientExclude" => "clientExclude",
            "restOnError" => "restOnError",
            "restPolicy" => "restPolicy",
            "restOverwrite" => "restOverwrite",
            _ => {
                warn("field", format!("unknown field {key:?} ignored"));
                continue;
            }
        };
        let text = match value {
            Value::String(s) => s.as_str(),
            Value::Null => continue,
            other => {
                warn(field, format!("expected a string, got {}; using the default", kind_of(other)));
                continue;
            }
        };
        match field {
            "restExclude" => mc.rest_exclude = FieldList::parse(text),
            "clientExclude" => mc.client_exclude = FieldList::parse(text),
            "restOverwrite" => mc.rest_overwrite = FieldList::parse(text),
            "restOnError" => match text.trim().to_ascii_uppercase().as_str() {
                "FAIL" => mc.rest_on_error = RestOnError::Fail,
                "LOG" => mc.rest_on_error = RestOnError::Log,
                "" => {}
                _ => warn(field, format!("invalid value {text:?} (FAIL or LOG); using LOG")),
            },
            "restPolicy" => match text.trim().to_ascii_uppercase().as_str() {
                "NOTIFY" => mc.rest_policy = RestPolicy::Notify,
                "OVERWRITE" => mc.rest_policy = RestPolicy::Overwrite,
                // WCS 5.x docs spell it DISABLE, WCS4-era docs DISABLED: accept both.
                "DISABLE" | "DISABLED" => mc.rest_policy = RestPolicy::Disable,
                "" => {}
                _ => warn(field, format!("invalid value {text:?} (NOTIFY, OVERWRITE or DISABLE); using NOTIFY")),
            },
            _ => unreachable!("field names are matched above"),
        }
    }
    mc
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_when_absent() {
        let (cfg, w) = RestClientConfig::parse(None);
        assert!(w.is_empty());
        let m = cfg.method(HookMethod::Call);
        assert_eq!(m.rest_on_error, RestOnError::Log);
        assert_eq!(m.rest_policy, RestPolicy::Notify);
        assert!(m.rest_exclude.is_empty() && m.client_exclude.is_empty() && m.rest_overwrite.is_empty());
    }

    #[test]
    fn click_to_call_example_parses() {
        let v = json!({
            "call": {"restExclude": "", "clientExclude": "", "restOnError": "FAIL",
                     "restPolicy": "OVERWRITE", "restOverwrite": "callee"},
            "ConnectionStatusEvent": {"restExclude": "",
                     "clientExclude": "sipLogin,sipPassword, sipAuthenticationName ,sipDomain,sipOutboundProxy",
                     "restOnError": "LOG", "restPolicy": "NOTIFY", "restOverwrite": ""}
        });
        let (cfg, w) = RestClientConfig::parse(Some(&v));
        assert!(w.is_empty(), "{w:?}");
        let call = cfg.method(HookMethod::Call);
        assert_eq!(call.rest_on_error, RestOnError::Fail);
        assert_eq!(call.rest_policy, RestPolicy::Overwrite);
        assert!(call.rest_overwrite.contains("callee"));
        let cse = cfg.method(HookMethod::ConnectionStatusEvent);
        assert_eq!(
            cse.client_exclude.iter().collect::<Vec<_>>(),
            ["sipLogin", "sipPassword", "sipAuthenticationName", "sipDomain", "sipOutboundProxy"]
        );
        // An unlisted method keeps the defaults.
        assert_eq!(cfg.method(HookMethod::Hangup), &MethodConfig::default());
    }

    #[test]
    fn disable_and_disabled_and_aliases() {
        let v = json!({"sendDTMF": {"restPolicy": "DISABLED"}, "sendBugReport": {"restPolicy": "DISABLE"}});
        let (cfg, w) = RestClientConfig::parse(Some(&v));
        assert!(w.is_empty());
        assert_eq!(cfg.method(HookMethod::SendDtmf).rest_policy, RestPolicy::Disable);
        assert_eq!(cfg.method(HookMethod::SubmitBugReport).rest_policy, RestPolicy::Disable);
    }

    #[test]
    fn invalid_values_fall_back_with_one_warning_each() {
        let v = json!({"call": {"restOnError": "EXPLODE", "restPolicy": "sometimes", "restExclude": 5},
                       "noSuchMethod": {}, "hold": "FAIL"});
        let (cfg, w) = RestClientConfig::parse(Some(&v));
        assert_eq!(cfg.method(HookMethod::Call).rest_on_error, RestOnError::Log);
        assert_eq!(cfg.method(HookMethod::Call).rest_policy, RestPolicy::Notify);
        assert!(cfg.method(HookMethod::Call).rest_exclude.is_empty());
        assert_eq!(w.len(), 5, "{w:?}");
        assert!(w[0].to_string().contains("EXPLODE"));
    }

    #[test]
    fn non_object_config_is_reported() {
        let (_, w) = RestClientConfig::parse(Some(&json!("nope")));
        assert_eq!(w.len(), 1);
    }
}
