//! A real CardDAV server for the contacts tests: Radicale (PyPI, installed
//! by `scripts/setup-test-tools` into `.tools/radicale`), on a free port
//! with its own storage; and a tap in front of it that counts the requests
//! a connector makes and can hold one back.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use super::{free_port, workspace};

pub const USER: &str = "alice";
pub const PASSWORD: &str = "dav-Passw0rd-9e1";

/// A Radicale process serving one user, with an address book at
/// `/alice/contacts/`.
pub struct Radicale {
    pub port: u16,
    dir: PathBuf,
    child: Child,
    http: reqwest::Client,
}

impl Radicale {
    /// Starts Radicale with its storage in `dir`, and makes the address book.
    pub async fn start(dir: &Path) -> Radicale {
        let radicale = Radicale::serve(dir, free_port()).await;
        let (code, body) = radicale
            .request(
                "MKCOL",
                "",
                r#"<?xml version="1.0"?><mkcol xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav"><set><prop><resourcetype><collection/><C:addressbook/></resourcetype><displayname>Contacts</displayname></prop></set></mkcol>"#,
            )
            .await;
        assert_eq!(code, 201, "Radicale made no address book: {body}");
        radicale
    }

    /// Serves the storage of `dir` on `port`.
    async fn serve(dir: &Path, port: u16) -> Radicale {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("users"), format!("{USER}:{PASSWORD}\n")).unwrap();
        let config = dir.join("config");
        std::fs::write(
            &config,
            format!(
                "[server]\nhosts = 127.0.0.1:{port}\n\
                 [auth]\ntype = htpasswd\nhtpasswd_filename = {users}\nhtpasswd_encryption = plain\n\
                 [storage]\nfilesystem_folder = {storage}\n\
                 [rights]\ntype = owner_only\n\
                 [logging]\nlevel = info\n",
                users = dir.join("users").display(),
                storage = dir.join("collections").display(),
            ),
        )
        .unwrap();
        let tools = workspace().join(".tools/radicale");
        assert!(
            tools.join("radicale").is_dir(),
            "Radicale is missing from {}: run scripts/setup-test-tools",
            tools.display()
        );
        let log = std::fs::File::create(dir.join("radicale.log")).unwrap();
        let child = Command::new("python3")
            .args(["-m", "radicale", "--config"])
            .arg(&config)
            .env("PYTHONPATH", &tools)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start Radicale");
        let radicale = Radicale {
            port,
            dir: dir.to_path_buf(),
            child,
            http: reqwest::Client::new(),
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return radicale;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("Radicale did not start: {}", radicale.log());
    }

    /// The address book's URL.
    pub fn book(&self) -> String {
        format!("http://127.0.0.1:{}/{USER}/contacts/", self.port)
    }

    /// Puts a vCard at `<name>.vcf`.
    pub async fn put(&self, name: &str, vcard: &str) {
        let (code, body) = self.request("PUT", &format!("{name}.vcf"), vcard).await;
        assert!(matches!(code, 201 | 204), "PUT {name}: {code} {body}");
    }

    pub async fn delete(&self, name: &str) {
        let (code, body) = self.request("DELETE", &format!("{name}.vcf"), "").await;
        assert!(matches!(code, 200 | 204), "DELETE {name}: {code} {body}");
    }

    async fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let content_type = if path.ends_with(".vcf") {
            "text/vcard"
        } else {
            "application/xml"
        };
        let response = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.book()))
            .basic_auth(USER, Some(PASSWORD))
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .expect("Radicale did not answer");
        (response.status().as_u16(), response.text().await.unwrap())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("radicale.log")).unwrap_or_default()
    }
}

impl Drop for Radicale {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A vCard 3.0 with these fields.
pub fn vcard(uid: &str, name: &str, email: &str, phone: &str) -> String {
    let (given, family) = name.split_once(' ').unwrap_or((name, ""));
    let mut card = format!(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\nN:{family};{given};;;\r\n"
    );
    if !email.is_empty() {
        card.push_str(&format!("EMAIL;TYPE=INTERNET:{email}\r\n"));
    }
    if !phone.is_empty() {
        card.push_str(&format!("TEL;TYPE=CELL:{phone}\r\n"));
    }
    card.push_str("END:VCARD\r\n");
    card
}

/// A TCP forwarder in front of a server. The host opens one connection per
/// outbound request, so each connection is one request: the tap keeps each
/// one's method and the name of its body's first element
/// (`REPORT sync-collection`), and holds back every request from a given
/// number on until released.
pub struct Tap {
    pub port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    hold_from: Arc<AtomicUsize>,
    released: Arc<Notify>,
}

impl Tap {
    pub async fn start(upstream: u16) -> Tap {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tap = Tap {
            port: listener.local_addr().unwrap().port(),
            seen: Arc::default(),
            hold_from: Arc::new(AtomicUsize::new(usize::MAX)),
            released: Arc::new(Notify::new()),
        };
        let (seen, hold_from, released) = (
            tap.seen.clone(),
            tap.hold_from.clone(),
            tap.released.clone(),
        );
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (seen, hold_from, released) =
                    (seen.clone(), hold_from.clone(), released.clone());
                tokio::spawn(async move {
                    let _ = forward(client, upstream, seen, hold_from, released).await;
                });
            }
        });
        tap
    }

    /// The address book's URL through the tap.
    pub fn book(&self) -> String {
        format!("http://127.0.0.1:{}/{USER}/contacts/", self.port)
    }

    /// What the requests so far were.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// Forgets the requests seen so far.
    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }

    /// Holds back the `nth` request from now (1 = the next one) and all
    /// after it, until [`Tap::release`].
    pub fn hold_from(&self, nth: usize) {
        let already = self.seen.lock().unwrap().len();
        self.hold_from.store(already + nth, Ordering::SeqCst);
    }

    pub fn release(&self) {
        self.hold_from.store(usize::MAX, Ordering::SeqCst);
        self.released.notify_waiters();
    }
}

async fn forward(
    mut client: tokio::net::TcpStream,
    upstream: u16,
    seen: Arc<Mutex<Vec<String>>>,
    hold_from: Arc<AtomicUsize>,
    released: Arc<Notify>,
) -> std::io::Result<()> {
    // The whole request: its head, then as much body as it says it has.
    let mut request = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&chunk[..n]);
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < head_end + length {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let method = head.split(' ').next().unwrap_or_default().to_uppercase();
    let body = String::from_utf8_lossy(&request[head_end..]);
    let element = ["sync-collection", "addressbook-multiget", "propfind"]
        .into_iter()
        .find(|name| body.contains(name))
        .unwrap_or("");
    let number = {
        let mut seen = seen.lock().unwrap();
        seen.push(format!("{method} {element}").trim().to_string());
        seen.len()
    };
    while number >= hold_from.load(Ordering::SeqCst) {
        // Registered before the check, so a release in between is not missed.
        let notified = released.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if number < hold_from.load(Ordering::SeqCst) {
            break;
        }
        notified.await;
    }
    let mut server = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await?;
    server.write_all(&request).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}
