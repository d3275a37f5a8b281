// Reads a perplexity.ai page for the bot, after the helpers of dom.js (`mode`, `sel`, ...).
// arguments[2] is the manifest's `sources_tab_patterns` (regular expressions for the text of a
// button that opens the sources list). The modes:
//   probe          the state the wait loops need (challenge, sign-in modal, stop button, last answer
//                  and its text so far)
//   composer       the prompt box element, or null
//   composer_text  the text in the prompt box
//   submit         the submit button when it is enabled, or null
//   extract        the last answer: html, text without chips, chips, markdown html, model, ...
//   sources_tab    the control that opens the last answer's sources list, or null
//   sources        the open sources list as [{href, title}], or null when no list is open
//
// The answer is the last element the `answer` role finds in the document. Its scope (where its
// footer, its sources control and its error live) is its `turn`, else its largest ancestor
// holding no other answer and not the composer: a page without a turn wrapper still reads.
// Without any answer element, the last turn's text (less the question, the steps, the footer,
// the sources list and controls) is the answer: a fallback read.

const tabPatterns = (arguments[2] || []).map((p) => {
  try {
    return new RegExp(p, 'i');
  } catch (_) {
    return null;
  }
}).filter(Boolean);

// What the fallback read leaves out of a turn besides controls.
const NOT_ANSWER = () => [
  sel.query,
  sel.search_steps,
  sel.sources_panel,
  sel.model_label,
  sel.error,
  sel.action_bar,
  sel.citation_chip,
  sel.citation_extra,
];

function answersIn(root) {
  return every(root, sel.answer);
}

// The answer's scope: its turn, else its largest ancestor without another answer or the composer.
function scopeOf(answer) {
  const turn = closest(answer, sel.turn);
  if (turn) return { scope: turn, turn: true };
  let scope = answer;
  for (;;) {
    const parent = scope.parentElement;
    if (!parent || parent === document.body || parent === document.documentElement) break;
    if (answersIn(parent).length > 1 || first(parent, sel.composer)) break;
    scope = parent;
  }
  return { scope, turn: false };
}

// The answer being read: {answers, turns, answer, scope, turn} (answer null for a fallback read).
function current() {
  const answers = answersIn(document);
  const turns = every(document, sel.turn);
  const answer = answers.length ? answers[answers.length - 1] : null;
  if (answer) return Object.assign({ answers: answers.length, turns: turns.length, answer }, scopeOf(answer));
  const turn = turns.length ? turns[turns.length - 1] : null;
  return { answers: 0, turns: turns.length, answer: null, scope: turn, turn: !!turn };
}

// A chip's source: the manifest's URL attribute on the chip or inside it, else a link.
function chipUrl(chip) {
  for (const attr of sel.citation_url_attribute || []) {
    if (chip.hasAttribute(attr)) return chip.getAttribute(attr);
    const inner = chip.querySelector('[' + attr + ']');
    if (inner) return inner.getAttribute(attr);
  }
  if (chip.href) return chip.href;
  const link = chip.querySelector('a[href]');
  return link ? link.href : '';
}

function hostOf(url) {
  try {
    return new URL(url).hostname.replace(/^www\./, '');
  } catch (_) {
    return url;
  }
}

// The answer's chips, the sources list's own chips left out.
function chipsIn(root) {
  return every(root, sel.citation_chip).filter((chip) => !closest(chip, sel.sources_panel));
}

// The control that opens the sources list: a manifest selector, else a button whose text says so.
function sourcesControl(scope) {
  const tab = first(scope, sel.sources_tab);
  if (tab) return tab;
  return (
    Array.from(scope.querySelectorAll('button, [role="button"], [role="tab"]')).find((button) =>
      tabPatterns.some((re) => re.test(textOf(button).replace(/\s+/g, ' ')))
    ) || null
  );
}

// The text a fallback read takes: the scope less everything that is not the answer.
function fallbackCopy(scope) {
  return copyWithoutAll(scope, ...NOT_ANSWER());
}

switch (mode) {
  case 'probe': {
    const composer = firstShown(document, sel.composer);
    const dialog = firstShown(document, ['[role="dialog"]', '[role="alertdialog"]']);
    const { answers, turns, answer, scope, turn } = current();
    let last = null;
    if (scope) {
      const error = first(scope, sel.error);
      let html = '';
      let text = '';
      if (answer) {
        html = answer.innerHTML;
        text = answer.textContent || '';
      } else {
        const copy = fallbackCopy(scope);
        html = copy.innerHTML;
        text = copy.textContent || '';
      }
      last = {
        answer: !!answer,
        turn,
        text_len: text.trim().length,
        text: text.trim(),
        signature: signature(html),
        action_bar: !!first(scope, sel.action_bar),
        error: error ? textOf(error) : null,
      };
    }
    return {
      ready: document.readyState === 'complete',
      title: document.title || '',
      text_head: document.body ? (document.body.innerText || '').slice(0, 600) : '',
      challenge: !!first(document, sel.challenge),
      login_wall: !!firstShown(document, sel.login_wall),
      dialog_text: dialog ? textOf(dialog).slice(0, 400) : null,
      composer: !!composer,
      composer_text: composerText(composer),
      stop: !!firstShown(document, sel.stop_button),
      answers,
      turns,
      last,
    };
  }
  case 'composer':
    return firstShown(document, sel.composer);
  case 'composer_text':
    return composerText(firstShown(document, sel.composer));
  case 'submit': {
    const submit = firstShown(document, sel.submit_button);
    return enabled(submit) ? submit : null;
  }
  case 'extract': {
    const { answer, scope, turn } = current();
    if (!scope) return null;
    const root = answer || scope;
    const chipEls = chipsIn(root);
    const chips = chipEls.map((chip) => ({ href: chipUrl(chip) }));
    let text;
    let html;
    let marked;
    if (answer) {
      text = measuredText(copyWithout(answer, sel.citation_chip, sel.citation_extra));
      html = answer.innerHTML;
      marked = answer.cloneNode(true);
    } else {
      const read = fallbackRead(scope, ...NOT_ANSWER());
      text = read.text;
      html = read.node.innerHTML;
      marked = copyWithoutAll(scope, ...NOT_ANSWER().filter((list) => list !== sel.citation_chip));
    }
    // For markdown, each chip becomes a pill link named by its domain: "([site](url))".
    every(marked, sel.citation_extra).forEach((extra) => extra.remove());
    every(marked, sel.citation_chip).forEach((chip) => {
      const url = chipUrl(chip);
      if (!url) {
        chip.remove();
        return;
      }
      chip.replaceWith(pill(url, hostOf(url)));
    });
    const model = first(scope, sel.model_label);
    return {
      html,
      text,
      chips,
      markdown_html: marked.innerHTML,
      model: model ? textOf(model) : null,
      search_steps: !!first(scope, sel.search_steps),
      sources_tab: !!sourcesControl(scope),
      fallback: !answer,
      turn,
    };
  }
  case 'sources_tab': {
    const { scope } = current();
    const tab = scope ? sourcesControl(scope) : null;
    return shown(tab) ? tab : null;
  }
  case 'sources': {
    const { scope } = current();
    const panel = (scope && firstShown(scope, sel.sources_panel)) || firstShown(document, sel.sources_panel);
    if (!panel) return null;
    return every(panel, sel.sources_link).map((link) => {
      const title = first(link, sel.sources_title);
      return { href: hrefOf(link) || chipUrl(link), title: title ? textOf(title) : textOf(link) };
    });
  }
  default:
    throw new Error('unknown page mode ' + mode);
}
