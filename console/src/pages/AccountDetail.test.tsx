import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { cleanup, fireEvent, render, waitFor } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { AccountSchema, AccountStatus, EvidenceCaseSchema, LeaseSchema } from "../gen/aap/v1/sessions_pb";
import { AccountDetail } from "./AccountDetail";

const api = vi.hoisted(() => ({
  sessions: {
    getAccount: vi.fn(),
    listLeases: vi.fn(),
    listEvidence: vi.fn(),
    disableAccount: vi.fn(),
    enableAccount: vi.fn(),
    deleteAccount: vi.fn(),
    updateAccount: vi.fn(),
    getEvidence: vi.fn(),
  },
  logins: { startRemoteLogin: vi.fn() },
}));

vi.mock("../api", async (importOriginal) => ({ ...(await importOriginal<typeof import("../api")>()), ...api }));

const account = create(AccountSchema, {
  id: "a1",
  assistant: "chatgpt",
  plan: "Plus",
  label: "one",
  status: AccountStatus.ACTIVE,
  underlyingStatus: AccountStatus.ACTIVE,
  proxy: "http://p:8080",
});

const $ = (selector: string) => document.querySelector<HTMLElement>(selector);

beforeEach(() => {
  vi.resetAllMocks();
  api.sessions.getAccount.mockResolvedValue({ account });
  api.sessions.listLeases.mockResolvedValue({
    leases: [create(LeaseSchema, { id: "l1", botId: "bot-1", outcome: "ok" })],
  });
  api.sessions.listEvidence.mockResolvedValue({
    cases: [create(EvidenceCaseSchema, { id: "e1", class: "challenge", hasScreenshot: true })],
  });
  window.location.hash = "#/accounts/a1";
});

afterEach(cleanup);

async function open() {
  render(<AccountDetail id="a1" />);
  await waitFor(() => expect($("#account")?.dataset.status).toBe("active"));
}

describe("AccountDetail", () => {
  it("shows the account with its leases and failed attempts", async () => {
    await open();
    expect($("#account")?.dataset.accountId).toBe("a1");
    expect(document.querySelectorAll("tr[data-testid=lease-row]")).toHaveLength(1);
    expect(document.querySelectorAll("tr[data-testid=evidence-row]")).toHaveLength(1);
    expect(api.sessions.listLeases).toHaveBeenCalledWith({ accountId: "a1", limit: 100 }, expect.anything());
  });

  it("shows the prompts of the hour against the budget, and until when an account at it rests", async () => {
    const frees = new Date(Date.now() + 20 * 60_000);
    api.sessions.getAccount.mockResolvedValue({
      account: create(AccountSchema, { ...account, promptsThisHour: 40n, hourlyBudget: 40, budgetFreesAt: timestampFromDate(frees) }),
    });
    await open();
    const text = $("#account")?.textContent ?? "";
    expect(text).toContain("40 of a budget of 40");
    expect(text).toMatch(/at its hourly budget \(40\) until .* \(in (19|20) min\)/);
  });

  it("deletes only after the in-page confirmation, then goes back to the list", async () => {
    api.sessions.deleteAccount.mockResolvedValue({});
    await open();
    fireEvent.click($("#delete")!);
    expect(api.sessions.deleteAccount).not.toHaveBeenCalled();
    fireEvent.click($("#confirm-delete")!);
    await waitFor(() => expect(window.location.hash).toBe("#/accounts"));
    expect(api.sessions.deleteAccount).toHaveBeenCalledWith({ accountId: "a1" });
  });

  it("shows why an action was refused", async () => {
    api.sessions.deleteAccount.mockRejectedValue(
      new ConnectError("a bot holds the account: disable it first", Code.FailedPrecondition),
    );
    await open();
    fireEvent.click($("#delete")!);
    fireEvent.click($("#confirm-delete")!);
    await waitFor(() => expect($("#account-error")?.textContent).toBe("a bot holds the account: disable it first"));
  });

  it("disables and then offers to enable", async () => {
    api.sessions.disableAccount.mockResolvedValue({
      account: { ...account, status: AccountStatus.DISABLED },
    });
    await open();
    expect($("#enable")).toBeNull();
    fireEvent.click($("#disable")!);
    await waitFor(() => expect($("#account")?.dataset.status).toBe("disabled"));
    expect($("#enable")).not.toBeNull();
  });

  it("ends a cool-down, offered only while the account rests", async () => {
    await open();
    expect($("#end-cooldown")).toBeNull();
    cleanup();
    const cooling = { ...account, status: AccountStatus.COOLING, underlyingStatus: AccountStatus.COOLING };
    api.sessions.getAccount.mockResolvedValue({ account: cooling });
    api.sessions.updateAccount.mockResolvedValue({ account });
    render(<AccountDetail id="a1" />);
    await waitFor(() => expect($("#account")?.dataset.status).toBe("cooling"));
    fireEvent.click($("#end-cooldown")!);
    await waitFor(() => expect($("#account")?.dataset.status).toBe("active"));
    expect(api.sessions.updateAccount).toHaveBeenCalledWith({ accountId: "a1", endCooldown: true });
    expect($("#end-cooldown")).toBeNull();
  });

  it("saves only the fields that changed", async () => {
    api.sessions.updateAccount.mockResolvedValue({ account: { ...account, label: "renamed" } });
    await open();
    expect(($("#save-account") as HTMLButtonElement).disabled).toBe(true);
    fireEvent.change($("#edit-label")!, { target: { value: "renamed" } });
    fireEvent.click($("#save-account")!);
    await waitFor(() => expect(api.sessions.updateAccount).toHaveBeenCalledOnce());
    expect(api.sessions.updateAccount).toHaveBeenCalledWith({ accountId: "a1", label: "renamed" });
  });

  it("shows a screenshot from a blob URL and revokes it when closed", async () => {
    const createObjectURL = vi.fn(() => "blob:shot");
    const revokeObjectURL = vi.fn();
    // jsdom has no blob URLs.
    Object.assign(URL, { createObjectURL, revokeObjectURL });
    api.sessions.getEvidence.mockResolvedValue({ screenshotPng: new Uint8Array([137, 80, 78, 71]) });
    await open();
    fireEvent.click($(".show-screenshot")!);
    await waitFor(() => expect($("img#evidence-screenshot")?.getAttribute("src")).toBe("blob:shot"));
    expect(api.sessions.getEvidence).toHaveBeenCalledWith({ evidenceId: "e1" });
    fireEvent.click(document.querySelector(".screenshot figcaption button")!);
    expect(revokeObjectURL).toHaveBeenCalledWith("blob:shot");
    expect($("img#evidence-screenshot")).toBeNull();
  });
});
