import { useCallback, useEffect, useMemo, useState } from "react";
import { FailureContext, type Failure } from "./api";
import { describeError } from "./errors";
import { AccountDetail } from "./pages/AccountDetail";
import { Accounts } from "./pages/Accounts";
import { AddAccount } from "./pages/AddAccount";
import { RemoteLoginView } from "./pages/RemoteLoginView";
import { SignIn } from "./pages/SignIn";
import { useRoute } from "./router";
import { currentSession, signOut, type Principal } from "./session";

type Auth =
  | { state: "checking" }
  | { state: "signed-out"; notice?: string }
  | { state: "signed-in"; principal: Principal }
  | { state: "unreachable"; message: string };

/** Who is signed in, asked of the server (the cookie is HttpOnly: the page cannot look). */
async function resolveAuth(): Promise<Auth> {
  try {
    const principal = await currentSession();
    return principal ? { state: "signed-in", principal } : { state: "signed-out" };
  } catch (err) {
    return { state: "unreachable", message: err instanceof Error ? err.message : String(err) };
  }
}

export function App() {
  const [auth, setAuth] = useState<Auth>({ state: "checking" });

  const check = useCallback(() => void resolveAuth().then(setAuth), []);

  useEffect(() => {
    let current = true;
    void resolveAuth().then((a) => current && setAuth(a));
    return () => {
      current = false;
    };
  }, []);

  const failure = useMemo<Failure>(
    () => ({
      fail: (err) => {
        const problem = describeError(err);
        if (problem.signedOut) setAuth({ state: "signed-out", notice: problem.message });
        return problem.message;
      },
    }),
    [],
  );

  const onSignOut = async () => {
    let notice: string | undefined;
    try {
      notice = await signOut();
    } catch {
      // The platform is unreachable: the cookie stays, but this page forgets the session all the same.
      notice = "cannot reach the platform: this page forgot the session, but the browser may still hold it";
    }
    setAuth({ state: "signed-out", notice });
  };

  switch (auth.state) {
    case "checking":
      return <div className="splash">Loading…</div>;
    case "unreachable":
      return (
        <div className="splash">
          <p className="error">{auth.message}</p>
          <button type="button" onClick={check}>
            Try again
          </button>
        </div>
      );
    case "signed-out":
      return <SignIn notice={auth.notice} onSignedIn={check} />;
    case "signed-in":
      return (
        <FailureContext.Provider value={failure}>
          <header className="topbar">
            <a className="brand" href="#/accounts">
              AAP console
            </a>
            <span className="spacer" />
            <span className="who">
              <span id="principal">{auth.principal.principal}</span>
              <span className="role">{auth.principal.role}</span>
            </span>
            <button type="button" id="sign-out" onClick={() => void onSignOut()}>
              Sign out
            </button>
          </header>
          <main>
            <Page />
          </main>
        </FailureContext.Provider>
      );
  }
}

function Page() {
  const route = useRoute();
  switch (route.page) {
    case "accounts":
      return <Accounts />;
    case "account":
      return <AccountDetail key={route.id} id={route.id} />;
    case "add":
      return <AddAccount />;
    case "login":
      return <RemoteLoginView key={route.id} id={route.id} />;
  }
}
