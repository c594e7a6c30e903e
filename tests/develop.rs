//! The author's loop, as an author outside this repository meets it:
//! `locker new` from the templates the binary carries, `locker build` with
//! each language's real toolchain, `locker dev` serving it (HTTP, an event,
//! a job, a setting, a call to another service) and rebuilding it on save.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::{
    Locker, cli_async, client_builder, eventually, guest, install, locker_bin, workspace,
};
use tokio::io::{AsyncBufReadExt, BufReader};

/// `locker` as an author runs it: the toolchains `scripts/setup-toolchains`
/// installed on the PATH, the SDKs set up in a tools folder of the tests'
/// own, and Rust services built into the guests' shared target folder.
fn author(args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(locker_bin());
    let path = std::env::join_paths(
        [
            workspace().join("guests/node_modules/.bin"),
            workspace().join(".tools/python/bin"),
        ]
        .into_iter()
        .chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )),
    )
    .unwrap();
    command
        .args(args)
        .env("PATH", path)
        .env(
            "LOCKER_TOOLS",
            locker_bin().parent().unwrap().join("locker-test-tools"),
        )
        .env("CARGO_TARGET_DIR", workspace().join("guests/target"))
        .env_remove("LOCKER_ROOT")
        .kill_on_drop(true);
    command
}

async fn run(dir: &Path, args: &[&str]) -> (bool, String) {
    let output = author(args).current_dir(dir).output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// `locker dev` running, and what it printed so far.
struct Dev {
    child: tokio::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    printed: Vec<String>,
}

impl Dev {
    async fn start(dir: &Path, args: &[&str]) -> Dev {
        let mut child = author(&[&["dev"], args].concat())
            .current_dir(dir)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let _ = sender.send(line);
            }
        });
        Dev {
            child,
            lines,
            printed: Vec::new(),
        }
    }

    /// The first line printed from now on that contains `wanted`.
    async fn line(&mut self, wanted: &str, patience: Duration) -> String {
        let waited = tokio::time::timeout(patience, async {
            while let Some(line) = self.lines.recv().await {
                self.printed.push(line.clone());
                if line.contains(wanted) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match waited {
            Ok(Some(line)) => line,
            _ => panic!(
                "locker dev never printed {wanted:?}; it printed:\n{}",
                self.printed.join("\n")
            ),
        }
    }

    /// Ends it the way Ctrl-C or a service manager would.
    async fn stop(mut self) {
        let pid = self.child.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
        assert!(ended.is_ok(), "locker dev did not end on SIGTERM");
    }
}

/// The events on `topic`, newest first.
async fn events(locker: &Locker, topic: &str) -> Vec<Value> {
    let (_, body) = locker
        .get(&format!("/_locker/api/events?topic={topic}&limit=100"))
        .await;
    serde_json::from_str(&body).unwrap()
}

/// The same scenario in every language: a new service with events and
/// jobs, served by `locker dev` in the locker at `root`.
async fn the_loop_serves_a_new_service(lang: &str, edit: (&str, &str, &str)) {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    install(&root, &guest("hello-rs"));
    let locker = Locker::start(&root, &["--event-attempts", "2", "--event-backoff", "50ms"]);
    let name = format!("svc-{lang}");

    let (made, said) = run(
        work.path(),
        &["new", &name, "--lang", lang, "--events", "--jobs"],
    )
    .await;
    assert!(made, "locker new failed: {said}");
    let dir = work.path().join(&name);
    assert!(dir.join("README.md").is_file() && dir.join("locker.toml").is_file());
    // The author lets it call another service.
    let manifest = dir.join("locker.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("calls = []", "calls = [\"hello-rs\"]"),
    )
    .unwrap();

    let (built, said) = run(&dir, &["build"]).await;
    assert!(built, "locker build failed: {said}");
    assert!(said.contains(&format!("built {name}")), "{said}");
    let (built, said) = run(&dir, &["build"]).await;
    assert!(
        built && said.contains("up to date"),
        "a second build did work again: {said}"
    );

    let ping = format!("{name}/ping");
    let mut dev = Dev::start(
        &dir,
        &[
            "--root",
            root.to_str().unwrap(),
            "--event",
            &ping,
            r#"{"n":1}"#,
            "--job",
            "tick",
        ],
    )
    .await;
    dev.line(&format!("serving {name} on"), Duration::from_secs(120))
        .await;
    let link = dev
        .line("log in and open it: ", Duration::from_secs(10))
        .await;
    dev.line("watching", Duration::from_secs(120)).await;

    // HTTP, with its setting's default, then the owner's value.
    let origin = locker.service_origin(&name);
    let get = async |path: &str| {
        let response = locker
            .http
            .get(format!("{origin}{path}"))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    assert_eq!(get("/").await, (200, format!("Hello from {name}\n")));
    let set = cli_async(&root, &["config", "set", &name, "greeting", "Hi"]).await;
    assert!(set.success, "{}", set.stderr);
    assert_eq!(get("/").await, (200, format!("Hi from {name}\n")));

    // A call to the service its manifest names.
    let (status, body) = get("/call/hello-rs/there").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("hello from rust at /there"), "{body}");

    // The event `--event` published reached its handler, which published
    // in turn; the job `--job` ran and published.
    let seen = eventually("the ping seen", Duration::from_secs(60), async || {
        let seen = events(&locker, &format!("{name}/seen")).await;
        seen.first().cloned().ok_or("none yet")
    })
    .await;
    let payload: Value = serde_json::from_str(seen["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["payload"], serde_json::json!({"n": 1}), "{seen}");
    // It kept the event as a plain JSON file in its folder.
    let ping_id = payload["id"].as_str().unwrap();
    assert_eq!(get("/seen").await, (200, format!("{ping_id}.json")));
    let kept = root
        .join("services")
        .join(&name)
        .join(format!("seen/{ping_id}.json"));
    let kept: Value = serde_json::from_slice(&std::fs::read(&kept).unwrap()).unwrap();
    assert_eq!(kept, serde_json::json!({"n": 1}));
    let ticked = events(&locker, &format!("{name}/ticked")).await;
    assert_eq!(ticked.len(), 1, "{ticked:?}");
    let payload: Value = serde_json::from_str(ticked[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["job"], "tick", "{payload}");

    // A host error reaches the service as the SDK's error, with its kind.
    let refused = locker
        .http
        .post(format!("{origin}/publish/not/declared"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    let said = refused.text().await.unwrap();
    assert!(
        said.contains("undeclared-topic") || said.contains("UndeclaredTopic"),
        "{said}"
    );

    // A handler that fails is retried, then kept as a dead letter; the
    // instance is not poisoned: the next event is handled.
    locker
        .post(&format!("/_locker/api/publish/{ping}"), r#"{"fail":true}"#)
        .await;
    locker
        .post(&format!("/_locker/api/publish/{ping}"), r#"{"n":2}"#)
        .await;
    eventually(
        "the second ping seen",
        Duration::from_secs(60),
        async || events(&locker, &format!("{name}/seen")).await.len() == 2,
    )
    .await;
    let (_, letters) = locker.get("/_locker/api/dead-letters").await;
    let letters: Vec<Value> = serde_json::from_str(&letters).unwrap();
    let letter = letters
        .iter()
        .find(|l| l["subscriber"] == name.as_str())
        .unwrap_or_else(|| panic!("no dead letter: {letters:?}"));
    assert_eq!(letter["attempts"], 2);
    assert!(
        letter["last_error"]
            .as_str()
            .unwrap()
            .contains("asked to fail"),
        "{letter}"
    );

    // The link logs a browser in once, and opens the service.
    let browser = client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let link = link
        .split("log in and open it: ")
        .nth(1)
        .unwrap()
        .to_string();
    let entered = browser.get(&link).send().await.unwrap();
    assert_eq!(entered.status().as_u16(), 303);
    assert!(entered.headers().contains_key("set-cookie"));
    let next = entered.headers()["location"].to_str().unwrap();
    assert!(
        next.starts_with(&format!("/_locker/ticket?service={name}")),
        "{next}"
    );
    let again = browser.get(&link).send().await.unwrap();
    assert_eq!(again.status().as_u16(), 403, "a login link worked twice");
    assert!(!again.headers().contains_key("set-cookie"));

    // A save rebuilds it and upgrades the service.
    let (file, from, to) = edit;
    let source = dir.join(file);
    let text = std::fs::read_to_string(&source).unwrap();
    assert!(text.contains(from), "{file} has no {from:?}");
    std::fs::write(&source, text.replace(from, to)).unwrap();
    dev.line("serving it again", Duration::from_secs(180)).await;
    assert_eq!(get("/").await, (200, format!("Hi, again, from {name}\n")));
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_new_build_dev() {
    the_loop_serves_a_new_service(
        "rust",
        ("src/lib.rs", "{greeting} from", "{greeting}, again, from"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn javascript_new_build_dev() {
    the_loop_serves_a_new_service("js", ("app.js", "'Hello'} from", "'Hello'}, again, from")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn python_new_build_dev() {
    the_loop_serves_a_new_service(
        "python",
        ("app.py", "'Hello')} from", "'Hello')}, again, from"),
    )
    .await;
}

/// `locker build` checks the source against the manifest before building,
/// and names both sides of a mismatch.
#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_that_subscribes_without_an_event_handler_is_refused() {
    let work = tempfile::tempdir().unwrap();
    for (lang, handler) in [
        ("js", "eventHandler"),
        ("python", "class EventHandler"),
        ("rust", "locker:service/event-handler"),
    ] {
        let name = format!("deaf-{lang}");
        let (made, said) = run(work.path(), &["new", &name, "--lang", lang]).await;
        assert!(made, "{said}");
        let dir: PathBuf = work.path().join(&name);
        let manifest = dir.join("locker.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        std::fs::write(&manifest, format!("subscribes = [\"contact/*\"]\n{text}")).unwrap();
        let (built, said) = run(&dir, &["build"]).await;
        assert!(
            !built,
            "{lang}: built a service that cannot take its events"
        );
        assert!(
            said.contains("contact/*") && said.contains(handler),
            "{lang}: {said}"
        );
        assert!(
            !dir.join("target/locker").exists(),
            "{lang}: a refused build left a package"
        );
    }
}

/// From the attacker's side: a login link is made only with the owner's
/// admin rights, and only the code it carries opens a session.
#[tokio::test(flavor = "multi_thread")]
async fn a_login_link_is_made_only_by_the_owner_and_a_guessed_code_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let locker = Locker::start(&root, &[]);
    let browser = client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mint = |token: Option<String>| {
        let request = browser.post(locker.url("/_locker/api/owner/login-link"));
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(mint(None).await, 401, "anyone minted a login link");
    let out = cli_async(&root, &["token", "create", "--scope", "read"]).await;
    let reader = out.stdout.trim().lines().last().unwrap().trim().to_string();
    assert_eq!(
        mint(Some(reader)).await,
        403,
        "a read token minted a login link"
    );

    let guessed = browser
        .get(format!(
            "{}/_locker/login-link?code=0123456789abcdef",
            locker.origin()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(guessed.status().as_u16(), 403);
    assert!(!guessed.headers().contains_key("set-cookie"));

    let out = cli_async(&root, &["owner", "login-link"]).await;
    assert!(out.success, "{}", out.stderr);
    let link = out.stdout.trim().replace("127.0.0.1", "locker.localhost");
    let entered = browser.get(&link).send().await.unwrap();
    assert_eq!(entered.status().as_u16(), 303, "{link}");
    assert!(entered.headers().contains_key("set-cookie"));
}

/// A toolchain that is missing and cannot be installed is named, with what
/// to install.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_toolchain_is_a_message_naming_what_to_install() {
    let work = tempfile::tempdir().unwrap();
    let (made, said) = run(work.path(), &["new", "bare", "--lang", "js"]).await;
    assert!(made, "{said}");
    let empty = work.path().join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let output = author(&["build"])
        .current_dir(work.path().join("bare"))
        .env("PATH", &empty)
        .env("LOCKER_TOOLS", work.path().join("no-tools"))
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        said.contains("componentize-js") && said.contains("install Node.js"),
        "{said}"
    );
}

/// With no componentize-py on the PATH, `locker build` installs the one it
/// is tested with into the tools folder (saying so), and builds with it.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_componentize_py_is_installed_into_the_tools_folder() {
    let work = tempfile::tempdir().unwrap();
    let (made, said) = run(work.path(), &["new", "fresh", "--lang", "python"]).await;
    assert!(made, "{said}");
    // The PATH without the toolchains the other tests share.
    let shared = [
        workspace().join("guests/node_modules/.bin"),
        workspace().join(".tools/python/bin"),
    ];
    let path = std::env::join_paths(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .filter(|p| !shared.contains(p)),
    )
    .unwrap();
    let tools = work.path().join("tools");
    let output = author(&["build"])
        .current_dir(work.path().join("fresh"))
        .env("PATH", path)
        .env("LOCKER_TOOLS", &tools)
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains("installing componentize-py==0.25.1 into"),
        "{said}"
    );
    assert!(tools.join("python/bin/componentize-py").is_file());
    assert!(work.path().join("fresh/target/locker/fresh.wasm").is_file());
}

/// The fourth command: `locker publish` signs a service (built first) or a
/// package folder (as it is) with the publisher's key and pushes it to a
/// real registry on loopback, once per version.
#[tokio::test(flavor = "multi_thread")]
async fn publish_signs_and_pushes_each_version_once() {
    use locker_registry::client::DEFAULT_MAX_COMPONENT;
    use locker_registry::keys::PublisherKey;
    use locker_registry::local::LocalRegistry;

    let Some(registry) = LocalRegistry::start().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("keys/publisher.key");
    let key_arg = key.to_str().unwrap();
    let (made, said) = run(work.path(), &["keygen", "--key", key_arg]).await;
    assert!(made, "{said}");
    let fingerprint = PublisherKey::load(&key).unwrap().public().fingerprint();
    assert!(said.contains(&fingerprint), "{said}");
    // Never beside a locker root's secrets.
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("secrets.key"), "").unwrap();
    let inside = root.join("publisher.key");
    let (made, said) = run(work.path(), &["keygen", "--key", inside.to_str().unwrap()]).await;
    assert!(!made && said.contains("inside the locker root"), "{said}");

    let (made, said) = run(work.path(), &["new", "shared", "--lang", "rust"]).await;
    assert!(made, "{said}");
    let to = format!("{}/alice", registry.address);
    let publish = ["publish", "shared", "--to", &to, "--key", key_arg];
    let (published, said) = run(work.path(), &publish).await;
    assert!(published, "{said}");
    assert!(
        said.contains(&format!("published {to}/shared:0.1.0")) && said.contains(&fingerprint),
        "{said}"
    );
    let pinned = PublisherKey::load(&key).unwrap().public();
    let pulled = registry
        .client()
        .pull(
            &registry.reference("alice/shared:0.1.0"),
            Some(&pinned),
            DEFAULT_MAX_COMPONENT,
        )
        .await
        .unwrap();
    assert!(pulled.files.manifest.contains("name = \"shared\""));
    let built = std::fs::read(work.path().join("shared/target/locker/shared.wasm")).unwrap();
    assert_eq!(pulled.component, built);

    let (again, said) = run(work.path(), &publish).await;
    assert!(!again && said.contains("published already"), "{said}");

    // A package folder goes as it is.
    let package = guest("hello-rs");
    let (published, said) = run(
        work.path(),
        &[
            "publish",
            package.to_str().unwrap(),
            "--to",
            &to,
            "--key",
            key_arg,
        ],
    )
    .await;
    assert!(published, "{said}");
    assert!(said.contains("alice/hello-rs:0.1.0"), "{said}");
}
