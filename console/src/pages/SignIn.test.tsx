import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { SignIn } from "./SignIn";

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

function submit(token: string) {
  fireEvent.change(document.querySelector("#token")!, { target: { value: token } });
  fireEvent.click(document.querySelector("#sign-in")!);
}

describe("SignIn", () => {
  it("shows the server's refusal in #sign-in-error and stays on the page", async () => {
    const message = "this console is for operators; bot-eu-7 is a bot";
    vi.stubGlobal(
      "fetch",
      vi.fn(async () => Response.json({ error: message }, { status: 403 })),
    );
    const onSignedIn = vi.fn();
    render(<SignIn onSignedIn={onSignedIn} />);
    expect(document.querySelector("#token")?.getAttribute("type")).toBe("password");
    expect(document.querySelector("#sign-in-error")).toBeNull();
    submit("bot-token");
    await waitFor(() => expect(document.querySelector("#sign-in-error")?.textContent).toBe(message));
    expect(onSignedIn).not.toHaveBeenCalled();
  });

  it("signs in on 204 and forgets the token", async () => {
    vi.stubGlobal(
      "fetch",
      vi.fn(async () => new Response(null, { status: 204 })),
    );
    const onSignedIn = vi.fn();
    render(<SignIn onSignedIn={onSignedIn} />);
    submit("operator-token");
    await waitFor(() => expect(onSignedIn).toHaveBeenCalledOnce());
    expect((document.querySelector("#token") as HTMLInputElement).value).toBe("");
  });

  it("shows why the previous session ended", () => {
    render(<SignIn notice="your session has ended: sign in again" onSignedIn={() => {}} />);
    expect(screen.getByText("your session has ended: sign in again")).toBeTruthy();
  });
});
