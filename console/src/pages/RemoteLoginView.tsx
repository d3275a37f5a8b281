import { useEffect, useMemo, useRef, useState, type ClipboardEvent, type KeyboardEvent, type MouseEvent } from "react";
import { assistantName } from "../accounts";
import { logins, useFail } from "../api";
import { retryable } from "../errors";
import { formatCountdown, toDate } from "../format";
import type { RemoteLogin } from "../gen/aap/v1/logins_pb";
import { MouseAction, RemoteLoginState } from "../gen/aap/v1/logins_pb";
import { useNow } from "../hooks";
import { forwardToInput, InputQueue, keyToInput, mapToViewport, mouseButton, MAX_TEXT, type Input } from "../input";
import { loginEnded, loginStateKey, loginStateText } from "../logins";
import { navigate, routeHref } from "../router";
import { follow, type StreamState } from "../stream";

/** Pointer moves are sent at most this often; clicks and keys are never held back. */
const MOVE_INTERVAL_MS = 80;

export function RemoteLoginView({ id }: { id: string }) {
  const fail = useFail();
  const [login, setLogin] = useState<RemoteLogin | undefined>();
  const [frame, setFrame] = useState<{ url: string; width: number; height: number } | undefined>();
  const [live, setLive] = useState<StreamState>("reconnecting");
  const [error, setError] = useState("");
  const screen = useRef<HTMLImageElement>(null);
  const lastMove = useRef(0);
  const lastPoint = useRef<{ x: number; y: number } | undefined>(undefined);
  const pressed = useRef<number | undefined>(undefined);
  const now = useNow(1000);

  const ended = login ? loginEnded(login.state) : false;

  const queue = useMemo(
    () =>
      new InputQueue(
        async (input) => {
          const res = await logins.sendRemoteLoginInput({ loginId: id, input });
          // Only the renewed idle deadline: the state is the stream's to tell, and this answer
          // may be older than the stream's last word.
          const idleDeadline = res.login?.idleDeadline;
          if (idleDeadline) setLogin((l) => (l && !loginEnded(l.state) ? { ...l, idleDeadline } : l));
        },
        (err) => setError(fail(err)),
      ),
    [id, fail],
  );

  useEffect(() => {
    const abort = new AbortController();
    void follow(
      abort.signal,
      async (received) => {
        for await (const res of logins.watchRemoteLogin({ loginId: id }, { signal: abort.signal })) {
          received();
          const event = res.event;
          if (event.case === "login") {
            setLogin(event.value);
            if (loginEnded(event.value.state)) return true;
          } else if (event.case === "frame") {
            const blob = new Blob([event.value.jpeg.slice()], { type: "image/jpeg" });
            const url = URL.createObjectURL(blob);
            // The previous frame's blob goes once the new one is in the page (the effect below).
            setFrame({ url, width: event.value.width, height: event.value.height });
          }
        }
        return false;
      },
      setLive,
      (err) => {
        setError(fail(err));
        return retryable(err);
      },
    );
    return () => {
      abort.abort();
      queue.clear();
    };
  }, [id, fail, queue]);

  // Runs after the page shows the next frame (or on leaving): the image no longer uses this blob.
  const shown = frame?.url;
  useEffect(
    () => () => {
      if (shown) URL.revokeObjectURL(shown);
    },
    [shown],
  );

  const send = (input: Input) => {
    if (!ended) queue.push(input);
  };

  const point = (e: { clientX: number; clientY: number }) => {
    const el = screen.current;
    if (!el || !frame) return null;
    // The frame is drawn inside the element's border: map from its content box.
    const rect = el.getBoundingClientRect();
    const box = {
      left: rect.left + el.clientLeft,
      top: rect.top + el.clientTop,
      width: el.clientWidth,
      height: el.clientHeight,
    };
    return mapToViewport(e.clientX, e.clientY, box, frame, {
      width: login?.width ?? 0,
      height: login?.height ?? 0,
    });
  };

  const onMouse = (e: MouseEvent<HTMLImageElement>, action: MouseAction) => {
    if (action === MouseAction.MOVE) {
      if (e.timeStamp - lastMove.current < MOVE_INTERVAL_MS) return;
      lastMove.current = e.timeStamp;
    } else {
      e.preventDefault();
      screen.current?.focus();
    }
    const p = point(e);
    if (!p) return;
    lastPoint.current = p;
    if (action === MouseAction.DOWN) pressed.current = e.button;
    if (action === MouseAction.UP) pressed.current = undefined;
    send({
      case: "mouse",
      value: {
        action,
        x: p.x,
        y: p.y,
        button: action === MouseAction.MOVE ? mouseButton(-1) : mouseButton(e.button),
        clickCount: Math.max(1, e.detail),
      },
    });
  };

  // A button released off the screen would stay down in the remote page: release it where the
  // pointer left.
  const onLeave = () => {
    const button = pressed.current;
    const p = lastPoint.current;
    pressed.current = undefined;
    if (button === undefined || !p) return;
    send({ case: "mouse", value: { action: MouseAction.UP, x: p.x, y: p.y, button: mouseButton(button) } });
  };

  const onWheel = (e: WheelEvent) => {
    e.preventDefault();
    const p = point(e);
    if (!p) return;
    // Lines and pages (deltaMode 1 and 2) as pixels, roughly as Chromium scrolls them.
    const unit = e.deltaMode === 1 ? 40 : e.deltaMode === 2 ? (login?.height ?? 800) : 1;
    send({ case: "scroll", value: { x: p.x, y: p.y, deltaX: e.deltaX * unit, deltaY: e.deltaY * unit } });
  };

  // React listens to the wheel passively, so its handler cannot keep the console from
  // scrolling: listen on the element itself, with the latest handler.
  const wheel = useRef(onWheel);
  useEffect(() => {
    wheel.current = onWheel;
  });
  useEffect(() => {
    const el = screen.current;
    if (!el) return;
    const listener = (e: WheelEvent) => wheel.current(e);
    el.addEventListener("wheel", listener, { passive: false });
    return () => el.removeEventListener("wheel", listener);
  }, []);

  const onKeyDown = (e: KeyboardEvent<HTMLImageElement>) => {
    if (e.nativeEvent.isComposing) return;
    const forward = keyToInput(e);
    if (!forward) return;
    e.preventDefault();
    send(forwardToInput(forward));
  };

  const onPaste = (e: ClipboardEvent<HTMLImageElement>) => {
    const text = e.clipboardData.getData("text/plain");
    e.preventDefault();
    for (let i = 0; i < text.length; i += MAX_TEXT)
      send({ case: "text", value: { text: text.slice(i, i + MAX_TEXT) } });
  };

  const cancel = async () => {
    setError("");
    try {
      const res = await logins.cancelRemoteLogin({ loginId: id });
      if (res.login) setLogin(res.login);
    } catch (err) {
      setError(fail(err));
    }
  };

  const state = login ? loginStateKey(login.state) : "starting";
  const deadline = toDate(login?.idleDeadline);

  return (
    <section className="page" id="remote-login" data-state={state} data-login-id={id}>
      <button type="button" id="back" className="link" onClick={() => navigate({ page: "accounts" })}>
        ← Accounts
      </button>
      <div className="page-head">
        <h1>
          Remote login{" "}
          {login && (
            <span className="muted">
              {assistantName(login.assistant)}
              {login.plan && ` · ${login.plan}`}
              {login.label && ` · ${login.label}`}
            </span>
          )}
        </h1>
        <span className="spacer" />
        {!ended && (
          <span className={`live live-${live}`} data-state={live}>
            {live === "live" ? "live" : "reconnecting…"}
          </span>
        )}
        <button type="button" id="cancel-login" className="danger" disabled={ended} onClick={() => void cancel()}>
          Cancel
        </button>
      </div>
      <div className="login-status">
        <span className={`badge login-${state}`}>{login ? loginStateText(login.state) : "Connecting…"}</span>
        {!ended && deadline && (
          <span className="muted" title="the browser closes when no input comes before then">
            closes if idle in {formatCountdown(deadline.getTime() - now.getTime())}
          </span>
        )}
        {login?.page && !ended && <span className="muted">page: {login.page}</span>}
        {login?.state === RemoteLoginState.STORED && login.accountId && (
          <a id="open-account" className="button primary" href={routeHref({ page: "account", id: login.accountId })}>
            Open the account
          </a>
        )}
      </div>
      <p id="login-detail" className={login?.state === RemoteLoginState.FAILED ? "error" : "muted"}>
        {login?.detail}
        {login?.url && !ended && <span className="url mono"> {login.url}</span>}
      </p>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <div className={`screen-wrap${ended ? " ended" : ""}`}>
        <img
          id="screen"
          ref={screen}
          tabIndex={0}
          alt={frame ? "the remote browser's screen: click to focus, then type" : "waiting for the first frame"}
          src={frame?.url}
          draggable={false}
          onMouseDown={(e) => onMouse(e, MouseAction.DOWN)}
          onMouseUp={(e) => onMouse(e, MouseAction.UP)}
          onMouseMove={(e) => onMouse(e, MouseAction.MOVE)}
          onMouseLeave={onLeave}
          onContextMenu={(e) => e.preventDefault()}
          onKeyDown={onKeyDown}
          onPaste={onPaste}
        />
      </div>
      <p className="muted hint">Click the screen to focus it: keys, paste and the wheel then go to the remote page.</p>
    </section>
  );
}
