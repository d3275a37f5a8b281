import { useState, type ChangeEvent, type FormEvent } from "react";
import { ASSISTANTS } from "../accounts";
import { logins, sessions, useFail } from "../api";
import { navigate } from "../router";
import { RecentLogins } from "./RecentLogins";

export function AddAccount() {
  const fail = useFail();
  const [assistant, setAssistant] = useState(ASSISTANTS[0].id);
  const [plan, setPlan] = useState("");
  const [label, setLabel] = useState("");
  const [proxy, setProxy] = useState("");
  const [userAgent, setUserAgent] = useState("");
  const [storageState, setStorageState] = useState("");
  // Shown beside the action that failed.
  const [error, setError] = useState<{ from: "login" | "upload"; message: string } | undefined>();
  const [busy, setBusy] = useState(false);

  const account = {
    assistant,
    plan: plan.trim(),
    label: label.trim(),
    proxy: proxy.trim(),
    userAgent: userAgent.trim(),
  };

  const run = async (from: "login" | "upload", action: () => Promise<void>) => {
    setBusy(true);
    setError(undefined);
    try {
      await action();
    } catch (err) {
      setError({ from, message: fail(err) });
    } finally {
      setBusy(false);
    }
  };

  const startLogin = (e: FormEvent) => {
    e.preventDefault();
    void run("login", async () => {
      const res = await logins.startRemoteLogin(account);
      if (res.login) navigate({ page: "login", id: res.login.id });
    });
  };

  const upload = () =>
    void run("upload", async () => {
      const res = await sessions.createAccount({ ...account, storageStateJson: storageState });
      if (res.account) navigate({ page: "account", id: res.account.id });
    });

  const readFile = async (e: ChangeEvent<HTMLInputElement>) => {
    const file = e.target.files?.[0];
    if (file) setStorageState(await file.text());
  };

  return (
    <section className="page narrow">
      <button type="button" id="back" className="link" onClick={() => navigate({ page: "accounts" })}>
        ← Accounts
      </button>
      <h1>Add an account</h1>
      <form className="card form" onSubmit={startLogin}>
        <label htmlFor="new-assistant">Assistant</label>
        <select id="new-assistant" value={assistant} onChange={(e) => setAssistant(e.target.value)}>
          {ASSISTANTS.map((a) => (
            <option key={a.id} value={a.id}>
              {a.name}
            </option>
          ))}
        </select>
        <label htmlFor="new-plan">Plan</label>
        <input id="new-plan" placeholder="e.g. Plus" value={plan} onChange={(e) => setPlan(e.target.value)} />
        <label htmlFor="new-label">Label</label>
        <input
          id="new-label"
          placeholder="e.g. the login e-mail"
          value={label}
          onChange={(e) => setLabel(e.target.value)}
        />
        <label htmlFor="new-proxy">Proxy (optional)</label>
        <input
          id="new-proxy"
          placeholder="http://, https:// or socks5://host:port"
          value={proxy}
          onChange={(e) => setProxy(e.target.value)}
        />
        <label htmlFor="new-user-agent">User agent (optional)</label>
        <input
          id="new-user-agent"
          placeholder="derived from the account id"
          value={userAgent}
          onChange={(e) => setUserAgent(e.target.value)}
        />
        <div className="form-foot">
          <button id="start-remote-login" type="submit" className="primary" disabled={busy}>
            Log in remotely
          </button>
          <span className="muted">Opens the assistant's login page in a browser on the platform.</span>
        </div>
        {error?.from === "login" && <AddError message={error.message} />}
        <div className="upload">
          <h2>Or upload a storage state</h2>
          <p className="muted">
            A Playwright storage-state JSON document of a logged-in session, stored with the assistant, plan, label,
            proxy and user agent above.
          </p>
          <input type="file" accept="application/json,.json" onChange={(e) => void readFile(e)} />
          <textarea
            id="storage-state"
            rows={8}
            spellCheck={false}
            placeholder='{"cookies": [...], "origins": [...]}'
            value={storageState}
            onChange={(e) => setStorageState(e.target.value)}
          />
          <div className="form-foot">
            <button type="button" id="upload-storage-state" disabled={busy} onClick={upload}>
              Upload
            </button>
          </div>
          {error?.from === "upload" && <AddError message={error.message} />}
        </div>
      </form>
      <RecentLogins />
    </section>
  );
}

function AddError({ message }: { message: string }) {
  return (
    <p id="add-error" className="error" role="alert">
      {message}
    </p>
  );
}
