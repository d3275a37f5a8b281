// What stands between the bot and the page (dom.js comes first): dialogs over the page and
// layers fixed over the composer or the send control. Modes:
// - blockers: [{kind, text}] of each, empty when nothing is in the way;
// - dismiss_known: the first shown control of the manifest's `dismiss` role inside a blocker;
// - dismiss_generic: the first shown control inside a blocker whose label or text says close,
//   not now, reject or accept (in that order of preference);
// Dialogs that are part of reading an answer (the manifest's sources panel) and the login wall
// are no blockers.

function isPart(el) {
  return !!(first(document, sel.sources_panel) && closest(el, sel.sources_panel)) || !!closest(el, sel.login_wall);
}

function dialogs() {
  const found = Array.from(
    document.querySelectorAll('[role="dialog"][aria-modal="true"], [role="alertdialog"], dialog[open]'),
  );
  return found.filter((el) => shown(el) && !isPart(el));
}

// The outermost fixed or sticky element around `el`, or null.
function fixedLayer(el) {
  let layer = null;
  for (let node = el; node && node !== document.body; node = node.parentElement) {
    const position = getComputedStyle(node).position;
    if (position === 'fixed' || position === 'sticky') layer = node;
  }
  return layer;
}

// Layers over the centre of the composer or the send control: what a click there would hit
// instead of it.
function covers() {
  const targets = [firstShown(document, sel.composer), firstShown(document, sel.send_button)].filter(Boolean);
  const layers = [];
  for (const target of targets) {
    const box = target.getBoundingClientRect();
    const x = box.left + box.width / 2;
    const y = box.top + box.height / 2;
    if (x < 0 || y < 0 || x > window.innerWidth || y > window.innerHeight) continue;
    const hit = document.elementFromPoint(x, y);
    if (!hit || hit === target || target.contains(hit) || hit.contains(target)) continue;
    const layer = fixedLayer(hit);
    if (layer && !layer.contains(target) && !isPart(layer) && !layers.includes(layer)) layers.push(layer);
  }
  return layers;
}

function blockers() {
  const all = dialogs();
  for (const layer of covers()) if (!all.some((d) => d.contains(layer) || layer.contains(d))) all.push(layer);
  return all;
}

const CLOSE_WORDS = [
  /^(close|dismiss|×|✕|x)$/i,
  /^(no,? thanks|not now|(maybe|remind me) later|skip|got it|ok|okay|continue)$/i,
  /^(reject|decline)( all)?( cookies)?$|^reject non-essential$|^(necessary|essential) (cookies )?only$/i,
  /^(accept|allow|agree|i agree)( all)?( cookies)?$/i,
];

function labelOf(el) {
  return (el.getAttribute('aria-label') || el.innerText || el.textContent || '').replace(/\s+/g, ' ').trim();
}

function controls(root) {
  return Array.from(root.querySelectorAll('button, [role="button"], a[href], input[type="button"]')).filter(shown);
}

if (mode === 'blockers') {
  return blockers().map((el) => ({
    kind: el.matches('[role="dialog"], [role="alertdialog"], dialog') ? 'dialog' : 'cover',
    text: labelOf(el).slice(0, 120),
  }));
}
if (mode === 'dismiss_known') {
  for (const blocker of blockers()) {
    const control = firstShown(blocker, sel.dismiss);
    if (control) return control;
  }
  return null;
}
if (mode === 'dismiss_generic') {
  const all = blockers();
  for (const words of CLOSE_WORDS) {
    for (const blocker of all) {
      const control = controls(blocker).find((el) => words.test(labelOf(el)));
      if (control) return control;
    }
  }
  return null;
}
return null;
