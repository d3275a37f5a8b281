import { describe, expect, it, vi } from "vitest";
import { KeyAction, MouseAction } from "./gen/aap/v1/logins_pb";
import { forwardToInput, InputQueue, keyToInput, mapToViewport, modifierBits, type Input, type KeyLike } from "./input";

describe("mapToViewport", () => {
  const viewport = { width: 1280, height: 800 };

  it("maps an element exactly the frame's shape linearly", () => {
    const box = { left: 100, top: 50, width: 640, height: 400 };
    expect(mapToViewport(100, 50, box, viewport, viewport)).toEqual({ x: 0, y: 0 });
    expect(mapToViewport(420, 250, box, viewport, viewport)).toEqual({ x: 640, y: 400 });
  });

  it("skips the bands either side of a frame drawn to fit a wider element", () => {
    // 1280x800 fit into 1000x400: drawn 640x400, centred with 180 px bands left and right.
    const box = { left: 0, top: 0, width: 1000, height: 400 };
    expect(mapToViewport(180, 0, box, viewport, viewport)).toEqual({ x: 0, y: 0 });
    expect(mapToViewport(500, 200, box, viewport, viewport)).toEqual({ x: 640, y: 400 });
    expect(mapToViewport(100, 200, box, viewport, viewport)).toBeNull();
    expect(mapToViewport(900, 200, box, viewport, viewport)).toBeNull();
  });

  it("skips the bands above and below in a taller element", () => {
    // 1280x800 fit into 640x1000: drawn 640x400, 300 px bands above and below.
    const box = { left: 0, top: 0, width: 640, height: 1000 };
    expect(mapToViewport(320, 500, box, viewport, viewport)).toEqual({ x: 640, y: 400 });
    expect(mapToViewport(320, 299, box, viewport, viewport)).toBeNull();
  });

  it("maps into the viewport's CSS pixels when frames come scaled down", () => {
    const frame = { width: 640, height: 400 };
    const box = { left: 0, top: 0, width: 320, height: 200 };
    expect(mapToViewport(160, 100, box, frame, viewport)).toEqual({ x: 640, y: 400 });
  });

  it("keeps the far edge inside the viewport", () => {
    const box = { left: 0, top: 0, width: 640, height: 400 };
    expect(mapToViewport(640, 400, box, viewport, viewport)).toEqual({ x: 1279, y: 799 });
  });

  it("falls back to the frame's size without a viewport size, and maps nothing without a frame", () => {
    const box = { left: 0, top: 0, width: 640, height: 400 };
    expect(mapToViewport(320, 200, box, viewport, { width: 0, height: 0 })).toEqual({ x: 640, y: 400 });
    expect(mapToViewport(1, 1, box, { width: 0, height: 0 }, viewport)).toBeNull();
  });
});

function key(init: Partial<KeyLike>): KeyLike {
  return { key: "", code: "", altKey: false, ctrlKey: false, metaKey: false, shiftKey: false, ...init };
}

describe("keyToInput", () => {
  it("sends printable characters as text, shifted ones as they read", () => {
    expect(keyToInput(key({ key: "a", code: "KeyA" }))).toEqual({ kind: "text", text: "a" });
    expect(keyToInput(key({ key: "A", code: "KeyA", shiftKey: true }))).toEqual({ kind: "text", text: "A" });
    expect(keyToInput(key({ key: " ", code: "Space" }))).toEqual({ kind: "text", text: " " });
    expect(keyToInput(key({ key: "é" }))).toEqual({ kind: "text", text: "é" });
  });

  it("treats AltGr (Ctrl+Alt) characters as text", () => {
    expect(keyToInput(key({ key: "@", code: "KeyQ", ctrlKey: true, altKey: true }))).toEqual({
      kind: "text",
      text: "@",
    });
  });

  it("sends special keys as presses with their code and modifier bits", () => {
    expect(keyToInput(key({ key: "Enter", code: "Enter" }))).toEqual({
      kind: "key",
      key: "Enter",
      code: "Enter",
      modifiers: 0,
    });
    expect(keyToInput(key({ key: "Tab", code: "Tab", shiftKey: true }))).toMatchObject({ kind: "key", modifiers: 8 });
    for (const k of ["Backspace", "Delete", "Escape", "ArrowLeft", "ArrowUp", "Home", "End"]) {
      expect(keyToInput(key({ key: k, code: k }))).toMatchObject({ kind: "key", key: k });
    }
  });

  it("sends shortcuts as presses, but leaves paste to the paste event", () => {
    expect(keyToInput(key({ key: "a", code: "KeyA", ctrlKey: true }))).toEqual({
      kind: "key",
      key: "a",
      code: "KeyA",
      modifiers: 2,
    });
    expect(keyToInput(key({ key: "a", code: "KeyA", metaKey: true, shiftKey: true }))).toMatchObject({
      modifiers: 12,
    });
    expect(keyToInput(key({ key: "v", code: "KeyV", ctrlKey: true }))).toBeNull();
    expect(keyToInput(key({ key: "v", code: "KeyV", metaKey: true }))).toBeNull();
  });

  it("ignores modifiers alone, dead keys and function keys", () => {
    for (const k of ["Shift", "Control", "Alt", "Meta", "CapsLock", "Dead", "F5", "Unidentified"]) {
      expect(keyToInput(key({ key: k }))).toBeNull();
    }
  });

  it("computes CDP's modifier bits", () => {
    expect(modifierBits({ altKey: true, ctrlKey: false, metaKey: false, shiftKey: false })).toBe(1);
    expect(modifierBits({ altKey: true, ctrlKey: true, metaKey: true, shiftKey: true })).toBe(15);
  });

  it("builds KeyInput presses and TextInputs", () => {
    expect(forwardToInput({ kind: "key", key: "Enter", code: "Enter", modifiers: 2 })).toEqual({
      case: "key",
      value: { action: KeyAction.PRESS, key: "Enter", code: "Enter", modifiers: 2 },
    });
    expect(forwardToInput({ kind: "text", text: "hi" })).toEqual({ case: "text", value: { text: "hi" } });
  });
});

describe("InputQueue", () => {
  function deferredSender() {
    const sent: Input[] = [];
    const waiting: (() => void)[] = [];
    const send = vi.fn(
      (input: Input) =>
        new Promise<void>((resolve) => {
          sent.push(structuredClone(input));
          waiting.push(resolve);
        }),
    );
    const release = async () => {
      waiting.shift()?.();
      await new Promise((r) => setTimeout(r, 0));
    };
    return { sent, send, release };
  }
  const text = (t: string): Input => ({ case: "text", value: { text: t } });
  const move = (x: number): Input => ({ case: "mouse", value: { action: MouseAction.MOVE, x, y: 0 } });

  it("sends one at a time, in order, merging text typed while a call is out", async () => {
    const { sent, send, release } = deferredSender();
    const q = new InputQueue(send, () => {});
    q.push(text("a"));
    q.push(text("b"));
    q.push(text("c"));
    q.push(forwardToInput({ kind: "key", key: "Enter", code: "Enter", modifiers: 0 }));
    q.push(text("d"));
    expect(sent).toEqual([text("a")]);
    await release();
    expect(sent[1]).toEqual(text("bc"));
    await release();
    expect(sent[2]).toMatchObject({ case: "key", value: { key: "Enter" } });
    await release();
    expect(sent[3]).toEqual(text("d"));
    await release();
    expect(send).toHaveBeenCalledTimes(4);
  });

  it("keeps only the last of waiting pointer moves", async () => {
    const { sent, release } = (() => {
      const d = deferredSender();
      const q = new InputQueue(d.send, () => {});
      q.push(move(1));
      q.push(move(2));
      q.push(move(3));
      return d;
    })();
    await release();
    expect(sent).toEqual([move(1), move(3)]);
  });

  it("reports a failed send and goes on with the next", async () => {
    const errors: unknown[] = [];
    const send = vi.fn().mockRejectedValueOnce(new Error("gone")).mockResolvedValue(undefined);
    const q = new InputQueue(send, (e) => errors.push(e));
    q.push(move(1));
    q.push(text("x"));
    await new Promise((r) => setTimeout(r, 0));
    expect(errors).toHaveLength(1);
    expect(send).toHaveBeenCalledTimes(2);
  });
});
