/**
 * The console's sign-in, served by the platform as plain JSON on the console's origin. The token
 * goes to the server once; it answers with an HttpOnly cookie that the browser sends with every
 * later request (gRPC-web calls included), so the page never holds the token again.
 */

/** The signed-in operator, as `GET /console/session` says. */
export interface Principal {
  principal: string;
  role: string;
}

export type SignInResult = { ok: true } | { ok: false; message: string };

const PATH = "/console/session";

async function errorText(res: Response): Promise<string | undefined> {
  try {
    const body: unknown = await res.json();
    if (body && typeof body === "object" && "error" in body && typeof body.error === "string") {
      return body.error;
    }
  } catch {
    // Not JSON: the status line says enough.
  }
  return undefined;
}

/** Exchanges an operator token for the session cookie. */
export async function signIn(token: string, fetchFn: typeof fetch = fetch): Promise<SignInResult> {
  if (!token.trim()) return { ok: false, message: "enter your operator token" };
  let res: Response;
  try {
    res = await fetchFn(PATH, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ token: token.trim() }),
      credentials: "same-origin",
    });
  } catch {
    return { ok: false, message: "cannot reach the platform" };
  }
  if (res.ok) return { ok: true };
  const message = await errorText(res);
  switch (res.status) {
    case 401:
      return { ok: false, message: message ?? "unknown token" };
    case 403:
      return { ok: false, message: message ?? "this console is for operators" };
    default:
      return { ok: false, message: message ?? `sign-in failed (HTTP ${res.status})` };
  }
}

/** Who is signed in; undefined when no one is (401). Throws when the platform cannot say. */
export async function currentSession(fetchFn: typeof fetch = fetch): Promise<Principal | undefined> {
  const res = await fetchFn(PATH, { credentials: "same-origin" });
  if (res.status === 401) return undefined;
  if (!res.ok) throw new Error(`session check failed (HTTP ${res.status})`);
  const body = (await res.json()) as Partial<Principal>;
  return { principal: body.principal ?? "", role: body.role ?? "" };
}

/**
 * Ends the session: the server revokes the session's token and clears the cookie. Says what went
 * wrong when the token could not be revoked (the cookie is cleared all the same); undefined when
 * all went well.
 */
export async function signOut(fetchFn: typeof fetch = fetch): Promise<string | undefined> {
  const res = await fetchFn(PATH, { method: "DELETE", credentials: "same-origin" });
  if (res.ok) return undefined;
  return (await errorText(res)) ?? `sign-out failed (HTTP ${res.status})`;
}
