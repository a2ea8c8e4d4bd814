// TEMPORARY STAND-IN, replaced by helper's module. Not to be committed.
use crate::maps::{MapError, Table};
pub struct AccessOptions {
    pub recipient_delimiter: String,
    pub parent_domain_matches_subdomains: bool,
}
pub struct Probe {
    pub table: String,
    pub key: String,
    pub result: Option<String>,
}
#[derive(Debug, Clone)]
pub enum Action {
    Ok,
    Dunno,
    Reject {
        status: String,
        code: u16,
        text: String,
    },
    Defer {
        status: String,
        code: u16,
        text: String,
    },
    Discard(String),
    Hold(String),
    Prepend(String),
    Warn(String),
    Info(String),
    Junk(String),
    Folder(String),
    Ignored(String),
}
pub struct Hit {
    pub table: String,
    pub key: String,
    pub raw: String,
    pub action: Action,
}
pub fn check_address(
    _t: &[Box<dyn Table>],
    _a: &str,
    _o: &AccessOptions,
    _p: &mut Vec<Probe>,
) -> Result<Vec<Hit>, MapError> {
    Ok(vec![])
}
pub fn check_helo(
    _t: &[Box<dyn Table>],
    _a: &str,
    _o: &AccessOptions,
    _p: &mut Vec<Probe>,
) -> Result<Vec<Hit>, MapError> {
    Ok(vec![])
}
pub fn check_client(
    _t: &[Box<dyn Table>],
    _h: Option<&str>,
    _a: Option<&str>,
    _o: &AccessOptions,
    _p: &mut Vec<Probe>,
) -> Result<Vec<Hit>, MapError> {
    Ok(vec![])
}
