import { describe, expect, it, vi } from "vitest";
import { currentSession, signIn, signOut } from "./session";

function reply(status: number, body?: unknown): typeof fetch {
  return vi.fn(async () =>
    body === undefined ? new Response(null, { status }) : Response.json(body, { status }),
  ) as unknown as typeof fetch;
}

describe("signIn", () => {
  it("posts the token as JSON to /console/session and succeeds on 204", async () => {
    const fetchFn = reply(204);
    expect(await signIn(" secret ", fetchFn)).toEqual({ ok: true });
    expect(fetchFn).toHaveBeenCalledWith(
      "/console/session",
      expect.objectContaining({ method: "POST", body: JSON.stringify({ token: "secret" }) }),
    );
  });

  it("never sends an authorization header", async () => {
    const fetchFn = reply(204);
    await signIn("secret", fetchFn);
    const init = vi.mocked(fetchFn).mock.calls[0][1];
    expect(new Headers(init?.headers).has("authorization")).toBe(false);
  });

  it("shows the server's message for an unknown token", async () => {
    expect(await signIn("nope", reply(401, { error: "unknown token" }))).toEqual({
      ok: false,
      message: "unknown token",
    });
  });

  it("shows the server's message for a token that is not an operator's", async () => {
    const message = "this console is for operators; acme is a customer";
    expect(await signIn("cust", reply(403, { error: message }))).toEqual({ ok: false, message });
  });

  it("says something useful without a JSON body, or without a server", async () => {
    expect(await signIn("x", reply(401))).toEqual({ ok: false, message: "unknown token" });
    expect(await signIn("x", reply(502))).toEqual({ ok: false, message: "sign-in failed (HTTP 502)" });
    const down = vi.fn(async () => {
      throw new TypeError("failed to fetch");
    }) as unknown as typeof fetch;
    expect(await signIn("x", down)).toEqual({ ok: false, message: "cannot reach the platform" });
  });

  it("asks for a token before calling the server", async () => {
    const fetchFn = reply(204);
    expect(await signIn("  ", fetchFn)).toMatchObject({ ok: false });
    expect(fetchFn).not.toHaveBeenCalled();
  });
});

describe("currentSession", () => {
  it("returns the principal when signed in and undefined on 401", async () => {
    expect(await currentSession(reply(200, { principal: "ops", role: "operator" }))).toEqual({
      principal: "ops",
      role: "operator",
    });
    expect(await currentSession(reply(401, { error: "no session" }))).toBeUndefined();
  });

  it("throws when the platform cannot say", async () => {
    await expect(currentSession(reply(500))).rejects.toThrow("HTTP 500");
  });
});

describe("signOut", () => {
  it("deletes the session", async () => {
    const fetchFn = reply(204);
    expect(await signOut(fetchFn)).toBeUndefined();
    expect(fetchFn).toHaveBeenCalledWith("/console/session", expect.objectContaining({ method: "DELETE" }));
  });

  it("says when the session's token could not be revoked", async () => {
    const said = "signed out of this browser, but the session's token could not be revoked now";
    expect(await signOut(reply(503, { error: said }))).toBe(said);
    expect(await signOut(reply(502))).toBe("sign-out failed (HTTP 502)");
  });
});
