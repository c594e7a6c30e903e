//! The CardDAV client: what changed in an address book since a sync token
//! (RFC 6578 `sync-collection`), or by listing every ETag where the server
//! has no sync tokens; and the vCards of a batch of changed entries
//! (RFC 6352 `addressbook-multiget`).

use base64::Engine;
use roxmltree::{Document, Node};

const DAV: &str = "DAV:";
const CARDDAV: &str = "urn:ietf:params:xml:ns:carddav";

/// One address book on a server, with the owner's credentials.
pub struct AddressBook {
    url: String,
    authorization: String,
    /// Requests made so far, for the sync's report.
    pub requests: u32,
}

/// Entries that changed since a token, and the token to ask with next time.
pub struct Changes {
    /// `(href, etag)` of entries new or changed.
    pub changed: Vec<(String, String)>,
    /// Entries gone since the token.
    pub deleted: Vec<String>,
    /// The server's new token; `None` when it has none.
    pub token: Option<String>,
    /// Whether `changed` lists every entry there is (a first sync, a token
    /// the server forgot, a server without tokens): entries it lacks are gone.
    pub complete: bool,
}

/// An entry's vCard as the server sent it.
pub struct Entry {
    pub href: String,
    pub etag: String,
    pub vcard: String,
}

/// Why a request gave nothing usable.
#[derive(Debug)]
pub enum DavError {
    /// The server no longer knows the token (RFC 6578 `valid-sync-token`).
    TokenExpired,
    /// The server does not support `sync-collection`.
    NoSyncSupport,
    Other(String),
}

impl std::fmt::Display for DavError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DavError::TokenExpired => f.write_str("the server no longer knows the sync token"),
            DavError::NoSyncSupport => f.write_str("the server does not support sync-collection"),
            DavError::Other(message) => f.write_str(message),
        }
    }
}

impl AddressBook {
    pub fn new(url: &str, user: &str, password: &str) -> Result<Self, String> {
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(format!(
                "the server setting must be the address book's http(s) URL, not {url:?}"
            ));
        }
        let url = if url.ends_with('/') {
            url.to_string()
        } else {
            format!("{url}/")
        };
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Ok(AddressBook {
            url,
            authorization: format!("Basic {credentials}"),
            requests: 0,
        })
    }

    /// What changed since `token`; every entry when `token` is `None`.
    pub fn changes_since(&mut self, token: Option<&str>) -> Result<Changes, DavError> {
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<d:sync-collection xmlns:d="DAV:">
  <d:sync-token>{}</d:sync-token>
  <d:sync-level>1</d:sync-level>
  <d:prop><d:getetag/></d:prop>
</d:sync-collection>"#,
            escape(token.unwrap_or_default())
        );
        let (status, text) = self.request("REPORT", "0", &body)?;
        match status {
            207 => {}
            403 | 409 if text.contains("valid-sync-token") => return Err(DavError::TokenExpired),
            // Servers without RFC 6578 refuse the report in one of these ways.
            400 | 403 | 405 | 415 | 501 => return Err(DavError::NoSyncSupport),
            _ => return Err(unexpected("sync-collection", status, &text)),
        }
        self.read_changes(&text, token.is_none())
    }

    /// A `sync-collection` report's entries and new token.
    fn read_changes(&self, text: &str, complete: bool) -> Result<Changes, DavError> {
        let document = parse(text)?;
        let root = document.root_element();
        let mut changes = Changes {
            changed: Vec::new(),
            deleted: Vec::new(),
            token: child_text(root, DAV, "sync-token"),
            complete,
        };
        for response in children(root, DAV, "response") {
            let Some(href) = child_text(response, DAV, "href") else {
                continue;
            };
            if self.is_itself(&href) {
                continue;
            }
            // A 404 status on the response itself marks an entry gone.
            if child_text(response, DAV, "status").is_some_and(|s| s.contains(" 404")) {
                changes.deleted.push(href);
            } else if let Some(etag) = found_prop(response, DAV, "getetag") {
                changes.changed.push((href, etag));
            }
        }
        Ok(changes)
    }

    /// Every entry and its ETag (for servers without sync tokens).
    pub fn list(&mut self) -> Result<Changes, DavError> {
        let body = r#"<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>"#;
        let (status, text) = self.request("PROPFIND", "1", body)?;
        if status != 207 {
            return Err(unexpected("PROPFIND", status, &text));
        }
        let document = parse(&text)?;
        let changed = children(document.root_element(), DAV, "response")
            .filter_map(|response| {
                let href = child_text(response, DAV, "href")?;
                let etag = found_prop(response, DAV, "getetag")?;
                (!self.is_itself(&href)).then_some((href, etag))
            })
            .collect();
        Ok(Changes {
            changed,
            deleted: Vec::new(),
            token: None,
            complete: true,
        })
    }

    /// The vCards of these entries, in one request.
    pub fn fetch(&mut self, hrefs: &[&str]) -> Result<Vec<Entry>, DavError> {
        let hrefs: String = hrefs
            .iter()
            .map(|href| format!("  <d:href>{}</d:href>\n", escape(href)))
            .collect();
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<c:addressbook-multiget xmlns:d="DAV:" xmlns:c="{CARDDAV}">
  <d:prop><d:getetag/><c:address-data/></d:prop>
{hrefs}</c:addressbook-multiget>"#
        );
        let (status, text) = self.request("REPORT", "1", &body)?;
        if status != 207 {
            return Err(unexpected("addressbook-multiget", status, &text));
        }
        let document = parse(&text)?;
        Ok(children(document.root_element(), DAV, "response")
            .filter_map(|response| {
                Some(Entry {
                    href: child_text(response, DAV, "href")?,
                    etag: found_prop(response, DAV, "getetag").unwrap_or_default(),
                    vcard: found_prop(response, CARDDAV, "address-data")?,
                })
            })
            .collect())
    }

    fn request(
        &mut self,
        method: &str,
        depth: &str,
        body: &str,
    ) -> Result<(u16, String), DavError> {
        self.requests += 1;
        let headers = [
            ("authorization", self.authorization.as_str()),
            ("content-type", "application/xml; charset=utf-8"),
            ("depth", depth),
        ];
        let (status, bytes) = locker_sdk::send(method, &self.url, &headers, body.as_bytes())
            .map_err(|e| DavError::Other(format!("cannot reach {}: {e}", self.url)))?;
        if status == 401 {
            return Err(DavError::Other(format!(
                "{} refused the user and password ({status})",
                self.url
            )));
        }
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Whether `href` names the address book itself, not an entry in it.
    fn is_itself(&self, href: &str) -> bool {
        let path = self
            .url
            .splitn(4, '/')
            .nth(3)
            .map_or("/".to_string(), |p| format!("/{p}"));
        href.trim_end_matches('/') == path.trim_end_matches('/')
            || href.trim_end_matches('/') == self.url.trim_end_matches('/')
    }
}

fn unexpected(what: &str, status: u16, body: &str) -> DavError {
    let start: String = body.chars().take(200).collect();
    DavError::Other(format!("{what} answered {status}: {start}"))
}

fn parse(text: &str) -> Result<Document<'_>, DavError> {
    let document = Document::parse(text)
        .map_err(|e| DavError::Other(format!("the server's answer is not WebDAV XML: {e}")))?;
    let root = document.root_element();
    if !is(root, DAV, "multistatus") {
        return Err(DavError::Other(format!(
            "the server's answer is not a WebDAV multistatus but <{}>",
            root.tag_name().name()
        )));
    }
    Ok(document)
}

fn is(node: Node, namespace: &str, name: &str) -> bool {
    node.is_element()
        && node.tag_name().name() == name
        && node.tag_name().namespace() == Some(namespace)
}

fn children<'a, 'input>(
    node: Node<'a, 'input>,
    namespace: &'static str,
    name: &'static str,
) -> impl Iterator<Item = Node<'a, 'input>> {
    node.children()
        .filter(move |child| is(*child, namespace, name))
}

fn child_text(node: Node, namespace: &'static str, name: &'static str) -> Option<String> {
    children(node, namespace, name)
        .next()
        .map(|child| child.text().unwrap_or_default().trim().to_string())
}

/// A property's value from a response's `propstat` whose status is 200.
fn found_prop(response: Node, namespace: &'static str, name: &'static str) -> Option<String> {
    children(response, DAV, "propstat")
        .filter(|propstat| child_text(*propstat, DAV, "status").is_none_or(|s| s.contains(" 200")))
        .flat_map(|propstat| children(propstat, DAV, "prop"))
        .flat_map(|prop| children(prop, namespace, name))
        .map(|value| value.text().unwrap_or_default().to_string())
        .next()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_report_lists_changed_and_deleted_entries_and_the_new_token() {
        let book = AddressBook::new("http://dav.example/alice/contacts", "alice", "pw").unwrap();
        let report = r#"<?xml version='1.0' encoding='utf-8'?>
<multistatus xmlns="DAV:"><sync-token>http://radicale.org/ns/sync/42</sync-token>
<response><href>/alice/contacts/</href><propstat><prop><getetag>"book"</getetag></prop><status>HTTP/1.1 200 OK</status></propstat></response>
<response><href>/alice/contacts/ada.vcf</href><propstat><prop><getetag>"e1"</getetag></prop><status>HTTP/1.1 200 OK</status></propstat></response>
<response><href>/alice/contacts/alan.vcf</href><status>HTTP/1.1 404 Not Found</status></response>
</multistatus>"#;
        let changes = book.read_changes(report, false).unwrap();
        assert_eq!(
            changes.changed,
            [("/alice/contacts/ada.vcf".to_string(), "\"e1\"".to_string())]
        );
        assert_eq!(changes.deleted, ["/alice/contacts/alan.vcf"]);
        assert_eq!(
            changes.token.as_deref(),
            Some("http://radicale.org/ns/sync/42")
        );
    }

    #[test]
    fn an_answer_that_is_not_webdav_is_refused_by_name() {
        let book = AddressBook::new("http://dav.example/book/", "a", "b").unwrap();
        let error = book.read_changes("<html><body>Sign in</body></html>", false);
        assert!(matches!(error, Err(DavError::Other(m)) if m.contains("not a WebDAV multistatus")));
        let error = book.read_changes("{\"json\": true}", false);
        assert!(matches!(error, Err(DavError::Other(m)) if m.contains("not WebDAV XML")));
    }
}
