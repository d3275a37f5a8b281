//! The operator's input as CDP `Input.*` commands.

use serde_json::{Value, json};

/// At most this many characters in one text input.
pub const MAX_TEXT_CHARS: usize = 4096;
/// Coordinates beyond this (CSS pixels) are refused: no viewport is that large.
const MAX_COORDINATE: f64 = 20_000.0;

/// What a mouse does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MouseAction {
    /// Moves without a button.
    Move,
    /// Presses the button.
    Down,
    /// Releases the button.
    Up,
    /// Down then up at the same point.
    Click,
}

/// Which mouse button.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MouseButton {
    /// The left (main) button.
    Left,
    /// The middle button.
    Middle,
    /// The right button.
    Right,
    /// No button.
    None,
}

/// What a key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAction {
    /// Pressed.
    Down,
    /// Released.
    Up,
    /// Down then up.
    Press,
}

/// One input event from the operator, in CSS pixels of the viewport.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A mouse event.
    Mouse {
        /// What the mouse does.
        action: MouseAction,
        /// Horizontal position.
        x: f64,
        /// Vertical position.
        y: f64,
        /// Which button.
        button: MouseButton,
        /// 1 for a click, 2 for a double click.
        click_count: u32,
    },
    /// A key event.
    Key {
        /// What the key does.
        action: KeyAction,
        /// The DOM `key`, e.g. `Enter`, `a`.
        key: String,
        /// The DOM `code`, e.g. `KeyA`; may be empty.
        code: String,
        /// Alt=1, Ctrl=2, Meta=4, Shift=8.
        modifiers: u32,
    },
    /// Text typed into the focused element as is.
    Text(String),
    /// A wheel turn at a point.
    Scroll {
        /// Horizontal position.
        x: f64,
        /// Vertical position.
        y: f64,
        /// Horizontal scroll in pixels.
        delta_x: f64,
        /// Vertical scroll in pixels.
        delta_y: f64,
    },
}

/// Why an input is refused, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidInput {
    /// The offending field, as in the request (`text.text`, `mouse.x`).
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidInput {
    InvalidInput { field, reason: reason.into() }
}

fn coordinate(field: &'static str, value: f64) -> Result<(), InvalidInput> {
    if value.is_finite() && (0.0..=MAX_COORDINATE).contains(&value) {
        Ok(())
    } else {
        Err(invalid(field, format!("must be between 0 and {MAX_COORDINATE}")))
    }
}

impl Input {
    /// Refuses what no operator sends: text over [`MAX_TEXT_CHARS`], NUL bytes, coordinates
    /// off any screen, unknown modifier bits.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        match self {
            Input::Mouse { x, y, click_count, .. } => {
                coordinate("mouse.x", *x)?;
                coordinate("mouse.y", *y)?;
                if *click_count > 3 {
                    return Err(invalid("mouse.click_count", "must be at most 3"));
                }
            }
            Input::Key { key, code, modifiers, .. } => {
                if key.is_empty() || key.chars().count() > 32 || key.contains('\0') {
                    return Err(invalid("key.key", "must be a DOM key name of 1 to 32 characters"));
                }
                if code.chars().count() > 32 || code.contains('\0') {
                    return Err(invalid("key.code", "must be a DOM code of at most 32 characters"));
                }
                if *modifiers > 15 {
                    return Err(invalid("key.modifiers", "only Alt=1, Ctrl=2, Meta=4, Shift=8"));
                }
            }
            Input::Text(text) => {
                if text.is_empty() {
                    return Err(invalid("text.text", "is empty"));
                }
                if text.chars().count() > MAX_TEXT_CHARS {
                    return Err(invalid("text.text", format!("has more than {MAX_TEXT_CHARS} characters")));
                }
                if text.contains('\0') {
                    return Err(invalid("text.text", "contains a NUL character"));
                }
            }
            Input::Scroll { x, y, delta_x, delta_y } => {
                coordinate("scroll.x", *x)?;
                coordinate("scroll.y", *y)?;
                if !delta_x.is_finite()
                    || !delta_y.is_finite()
                    || delta_x.abs() > 100_000.0
                    || delta_y.abs() > 100_000.0
                {
                    return Err(invalid("scroll.delta", "must be finite and at most 100000"));
                }
            }
        }
        Ok(())
    }

    /// The CDP commands (method, params) that perform this input, in order.
    pub fn commands(&self) -> Vec<(&'static str, Value)> {
        const MOUSE: &str = "Input.dispatchMouseEvent";
        const KEY: &str = "Input.dispatchKeyEvent";
        match self {
            Input::Mouse { action, x, y, button, click_count } => {
                let clicks = (*click_count).max(1);
                let event = |kind: &str, button: MouseButton| json!({ "type": kind, "x": x, "y": y, "button": button_name(button), "clickCount": clicks });
                match action {
                    MouseAction::Move => {
                        vec![(MOUSE, json!({ "type": "mouseMoved", "x": x, "y": y, "button": "none" }))]
                    }
                    MouseAction::Down => vec![(MOUSE, event("mousePressed", *button))],
                    MouseAction::Up => vec![(MOUSE, event("mouseReleased", *button))],
                    MouseAction::Click => {
                        vec![(MOUSE, event("mousePressed", *button)), (MOUSE, event("mouseReleased", *button))]
                    }
                }
            }
            Input::Key { action, key, code, modifiers } => {
                let down = key_down(key, code, *modifiers);
                let up = json!({
                    "type": "keyUp", "key": key, "code": code, "modifiers": modifiers,
                    "windowsVirtualKeyCode": virtual_key_code(key),
                });
                match action {
                    KeyAction::Down => vec![(KEY, down)],
                    KeyAction::Up => vec![(KEY, up)],
                    KeyAction::Press => vec![(KEY, down), (KEY, up)],
                }
            }
            Input::Text(text) => vec![("Input.insertText", json!({ "text": text }))],
            Input::Scroll { x, y, delta_x, delta_y } => {
                vec![(MOUSE, json!({ "type": "mouseWheel", "x": x, "y": y, "deltaX": delta_x, "deltaY": delta_y }))]
            }
        }
    }
}

fn button_name(button: MouseButton) -> &'static str {
    match button {
        MouseButton::Left => "left",
        MouseButton::Middle => "middle",
        MouseButton::Right => "right",
        MouseButton::None => "none",
    }
}

/// A key that types something carries its text (Enter types "\r", which submits a form);
/// with Ctrl, Alt or Meta held it is a shortcut and types nothing.
fn key_down(key: &str, code: &str, modifiers: u32) -> Value {
    let shortcut = modifiers & 0b0111 != 0;
    let text = match key {
        "Enter" => Some("\r".to_owned()),
        _ if key.chars().count() == 1 => Some(key.to_owned()),
        _ => None,
    }
    .filter(|_| !shortcut);
    let mut event = json!({
        "type": if text.is_some() { "keyDown" } else { "rawKeyDown" },
        "key": key, "code": code, "modifiers": modifiers,
        "windowsVirtualKeyCode": virtual_key_code(key),
    });
    if let Some(text) = text {
        event["text"] = json!(text.clone());
        event["unmodifiedText"] = json!(text);
    }
    event
}

/// The Windows virtual key code Chromium needs to act on a key (Tab moves focus, Backspace
/// deletes); 0 for keys without one.
fn virtual_key_code(key: &str) -> u32 {
    match key {
        "Backspace" => 8,
        "Tab" => 9,
        "Enter" => 13,
        "Shift" => 16,
        "Control" => 17,
        "Alt" => 18,
        "Escape" => 27,
        " " => 32,
        "PageUp" => 33,
        "PageDown" => 34,
        "End" => 35,
        "Home" => 36,
        "ArrowLeft" => 37,
        "ArrowUp" => 38,
        "ArrowRight" => 39,
        "ArrowDown" => 40,
        "Delete" => 46,
        _ => {
            let mut chars = key.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if c.is_ascii_alphanumeric() => c.to_ascii_uppercase() as u32,
                _ => 0,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_click_is_a_press_and_a_release_at_the_same_point() {
        let click =
            Input::Mouse { action: MouseAction::Click, x: 240.0, y: 140.0, button: MouseButton::Left, click_count: 0 };
        let commands = click.commands();
        assert_eq!(commands.len(), 2);
        assert_eq!(commands[0].0, "Input.dispatchMouseEvent");
        assert_eq!(
            commands[0].1,
            json!({ "type": "mousePressed", "x": 240.0, "y": 140.0, "button": "left", "clickCount": 1 })
        );
        assert_eq!(commands[1].1["type"], "mouseReleased");
        let moved =
            Input::Mouse { action: MouseAction::Move, x: 1.0, y: 2.0, button: MouseButton::Left, click_count: 1 };
        assert_eq!(moved.commands()[0].1["button"], "none");
    }

    #[test]
    fn keys_type_their_text_unless_they_are_shortcuts() {
        let press = |key: &str, modifiers| {
            Input::Key { action: KeyAction::Press, key: key.into(), code: String::new(), modifiers }.commands()
        };
        let enter = press("Enter", 0);
        assert_eq!(enter[0].1["type"], "keyDown");
        assert_eq!(enter[0].1["text"], "\r");
        assert_eq!(enter[0].1["windowsVirtualKeyCode"], 13);
        assert_eq!(enter[1].1["type"], "keyUp");
        assert_eq!(press("Tab", 0)[0].1["type"], "rawKeyDown");
        assert_eq!(press("a", 0)[0].1["text"], "a");
        assert_eq!(press("a", 0)[0].1["windowsVirtualKeyCode"], 65);
        let select_all = press("a", 2);
        assert_eq!(select_all[0].1["type"], "rawKeyDown");
        assert!(select_all[0].1.get("text").is_none());
        assert_eq!(press("A", 8)[0].1["text"], "A");
    }

    #[test]
    fn text_and_wheel_map_to_insert_text_and_mouse_wheel() {
        assert_eq!(Input::Text("héllo".into()).commands(), vec![("Input.insertText", json!({ "text": "héllo" }))]);
        let wheel = Input::Scroll { x: 10.0, y: 20.0, delta_x: 0.0, delta_y: 300.0 }.commands();
        assert_eq!(wheel[0].1, json!({ "type": "mouseWheel", "x": 10.0, "y": 20.0, "deltaX": 0.0, "deltaY": 300.0 }));
    }

    #[test]
    fn oversized_text_nul_bytes_and_off_screen_points_are_refused() {
        assert_eq!(Input::Text("x".repeat(MAX_TEXT_CHARS)).validate(), Ok(()));
        assert_eq!(Input::Text("x".repeat(MAX_TEXT_CHARS + 1)).validate().map_err(|e| e.field), Err("text.text"));
        assert_eq!(Input::Text("a\0b".into()).validate().map_err(|e| e.field), Err("text.text"));
        let mouse =
            |x: f64| Input::Mouse { action: MouseAction::Click, x, y: 1.0, button: MouseButton::Left, click_count: 1 };
        assert_eq!(mouse(f64::NAN).validate().map_err(|e| e.field), Err("mouse.x"));
        assert_eq!(mouse(-1.0).validate().map_err(|e| e.field), Err("mouse.x"));
        let key = Input::Key { action: KeyAction::Press, key: "\0".into(), code: String::new(), modifiers: 0 };
        assert_eq!(key.validate().map_err(|e| e.field), Err("key.key"));
    }
}
