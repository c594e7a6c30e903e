// The login page's "Sign in with a passkey": asks the host for a
// challenge, lets the browser's authenticator answer it, and goes on to
// the page the login was for once the host has checked the answer.

const button = document.getElementById("passkey");
const problem = document.getElementById("passkey-problem");

function fail(message) {
  problem.textContent = message;
  problem.hidden = false;
  button.disabled = false;
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body ?? {}),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

async function signIn() {
  button.disabled = true;
  problem.hidden = true;
  if (!window.PublicKeyCredential || !PublicKeyCredential.parseRequestOptionsFromJSON) {
    fail("This browser cannot use passkeys: log in with the password.");
    return;
  }
  try {
    const started = await post("/_locker/passkey/start");
    const options = PublicKeyCredential.parseRequestOptionsFromJSON(started.options.publicKey);
    const credential = await navigator.credentials.get({ publicKey: options });
    const next = new URLSearchParams(location.search).get("next") || "/";
    const done = await post("/_locker/passkey/finish", {
      ceremony: started.ceremony,
      credential: credential.toJSON(),
      next,
    });
    location.assign(done.next);
  } catch (e) {
    fail(e.name === "NotAllowedError" ? "The passkey sign-in was cancelled." : e.message);
  }
}

button.addEventListener("click", signIn);
