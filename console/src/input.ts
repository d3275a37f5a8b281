import type { MessageInitShape } from "@bufbuild/protobuf";
import type { SendRemoteLoginInputRequestSchema } from "./gen/aap/v1/logins_pb";
import { KeyAction, MouseAction, MouseButton } from "./gen/aap/v1/logins_pb";

/** Where the screen element is drawn, as `getBoundingClientRect()` gives it. */
export interface Box {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** A size in pixels. */
export interface Size {
  width: number;
  height: number;
}

/**
 * Maps a point on the displayed screen (client coordinates) to the remote viewport's CSS pixels.
 *
 * The frame is drawn scaled to fit the element and centred (`object-fit: contain`), so bands
 * may lie either side; a point on a band is outside the page and maps to nothing. `frame` is the
 * JPEG's own size (it may be scaled down from the viewport), `viewport` is RemoteLogin.width and
 * height; without a viewport size the frame's size stands in for it.
 */
export function mapToViewport(
  clientX: number,
  clientY: number,
  box: Box,
  frame: Size,
  viewport: Size,
): { x: number; y: number } | null {
  if (frame.width <= 0 || frame.height <= 0 || box.width <= 0 || box.height <= 0) return null;
  const target = viewport.width > 0 && viewport.height > 0 ? viewport : frame;
  const scale = Math.min(box.width / frame.width, box.height / frame.height);
  const drawnWidth = frame.width * scale;
  const drawnHeight = frame.height * scale;
  const fx = (clientX - box.left - (box.width - drawnWidth) / 2) / drawnWidth;
  const fy = (clientY - box.top - (box.height - drawnHeight) / 2) / drawnHeight;
  if (fx < 0 || fx > 1 || fy < 0 || fy > 1) return null;
  return {
    x: Math.min(fx * target.width, target.width - 1),
    y: Math.min(fy * target.height, target.height - 1),
  };
}

/** The modifier bits as CDP takes them: Alt=1, Ctrl=2, Meta=4, Shift=8. */
export function modifierBits(e: { altKey: boolean; ctrlKey: boolean; metaKey: boolean; shiftKey: boolean }): number {
  return (e.altKey ? 1 : 0) | (e.ctrlKey ? 2 : 0) | (e.metaKey ? 4 : 0) | (e.shiftKey ? 8 : 0);
}

/** The keys forwarded as key presses rather than text. */
const SPECIAL_KEYS = new Set([
  "Enter",
  "Tab",
  "Backspace",
  "Delete",
  "Escape",
  "ArrowUp",
  "ArrowDown",
  "ArrowLeft",
  "ArrowRight",
  "Home",
  "End",
  "PageUp",
  "PageDown",
]);

export type KeyForward = { kind: "text"; text: string } | { kind: "key"; key: string; code: string; modifiers: number };

export interface KeyLike {
  key: string;
  code: string;
  altKey: boolean;
  ctrlKey: boolean;
  metaKey: boolean;
  shiftKey: boolean;
}

/**
 * What a keydown on the screen sends, or null to leave the key to the console's own page
 * (modifiers alone, function keys, and the paste shortcut, whose paste event carries the text).
 */
export function keyToInput(e: KeyLike): KeyForward | null {
  if (SPECIAL_KEYS.has(e.key)) {
    return { kind: "key", key: e.key, code: e.code, modifiers: modifierBits(e) };
  }
  if ([...e.key].length !== 1) return null;
  // Ctrl+Alt with a character is AltGr on Windows layouts (e.g. "@" on a German keyboard): text.
  const shortcut = (e.ctrlKey || e.metaKey) && !(e.ctrlKey && e.altKey && !e.metaKey);
  if (!shortcut) return { kind: "text", text: e.key };
  if (e.key.toLowerCase() === "v") return null;
  return { kind: "key", key: e.key, code: e.code, modifiers: modifierBits(e) };
}

/** The DOM's mouse button number as the proto's. */
export function mouseButton(button: number): MouseButton {
  switch (button) {
    case 0:
      return MouseButton.LEFT;
    case 1:
      return MouseButton.MIDDLE;
    case 2:
      return MouseButton.RIGHT;
    default:
      return MouseButton.NONE;
  }
}

/** The input part of a SendRemoteLoginInputRequest. */
export type Input = NonNullable<MessageInitShape<typeof SendRemoteLoginInputRequestSchema>["input"]>;

/** The most characters one TextInput may carry. */
export const MAX_TEXT = 4096;

/** A KeyInput press for a forwarded key, or a TextInput for text. */
export function forwardToInput(f: KeyForward): Input {
  if (f.kind === "text") return { case: "text", value: { text: f.text } };
  return {
    case: "key",
    value: { action: KeyAction.PRESS, key: f.key, code: f.code, modifiers: f.modifiers },
  };
}

/**
 * Sends inputs one at a time, in order (text typed before Enter must reach the page before it),
 * and merges what waits: quickly typed characters become one TextInput, and of several pointer
 * moves only the last is sent.
 */
export class InputQueue {
  private pending: Input[] = [];
  private running = false;

  constructor(
    private readonly send: (input: Input) => Promise<void>,
    private readonly onError: (err: unknown) => void,
  ) {}

  push(input: Input): void {
    const last = this.pending[this.pending.length - 1];
    if (
      last?.case === "text" &&
      input.case === "text" &&
      (last.value.text ?? "").length + (input.value.text ?? "").length <= MAX_TEXT
    ) {
      last.value = { text: (last.value.text ?? "") + (input.value.text ?? "") };
    } else if (
      last?.case === "mouse" &&
      input.case === "mouse" &&
      last.value.action === MouseAction.MOVE &&
      input.value.action === MouseAction.MOVE
    ) {
      this.pending[this.pending.length - 1] = input;
    } else {
      this.pending.push(input);
    }
    void this.drain();
  }

  /** Drops what has not been sent yet (the login ended). */
  clear(): void {
    this.pending = [];
  }

  private async drain(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (let next = this.pending.shift(); next; next = this.pending.shift()) {
        try {
          await this.send(next);
        } catch (err) {
          this.onError(err);
        }
      }
    } finally {
      this.running = false;
    }
  }
}
