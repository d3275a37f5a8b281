import { useState, type FormEvent } from "react";
import { signIn } from "../session";

export function SignIn({ notice, onSignedIn }: { notice?: string; onSignedIn: () => void }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    const result = await signIn(token);
    setBusy(false);
    if (result.ok) {
      setToken("");
      onSignedIn();
    } else {
      setError(result.message);
    }
  };

  return (
    <div className="sign-in-page">
      <form className="card sign-in" onSubmit={(e) => void submit(e)}>
        <h1>AAP console</h1>
        <p className="muted">Sign in with your operator token.</p>
        {notice && !error && <p className="notice">{notice}</p>}
        <label htmlFor="token">Operator token</label>
        <input
          id="token"
          type="password"
          autoComplete="current-password"
          autoFocus
          value={token}
          onChange={(e) => setToken(e.target.value)}
        />
        <button id="sign-in" type="submit" className="primary" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
        {error && (
          <p id="sign-in-error" className="error" role="alert">
            {error}
          </p>
        )}
      </form>
    </div>
  );
}
