// Reads a perplexity.ai page for the bot, after the helpers of dom.js (`mode`, `sel`, ...). The
// modes:
//   probe          the state the wait loops need (challenge, sign-in modal, stop button, last turn)
//   composer       the prompt box element, or null
//   composer_text  the text in the prompt box
//   submit         the submit button when it is enabled, or null
//   extract        the last answer: html, text without chips, chips, markdown html, model, ...
//   sources_tab    the last turn's sources tab ("Links"), or null
//   sources        the open sources list as [{href, title}], or null when no list is open

function lastTurn() {
  const { count, last } = lastOf(document, sel.turn);
  return { count, turn: last };
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

switch (mode) {
  case 'probe': {
    const composer = firstShown(document, sel.composer);
    const dialog = firstShown(document, ['[role="dialog"]', '[role="alertdialog"]']);
    const { count, turn } = lastTurn();
    let last = null;
    if (turn) {
      const answer = first(turn, sel.answer);
      const error = first(turn, sel.error);
      const html = answer ? answer.innerHTML : '';
      last = {
        answer: !!answer,
        text_len: answer ? (answer.textContent || '').trim().length : 0,
        signature: signature(html),
        action_bar: !!first(turn, sel.action_bar),
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
      turns: count,
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
    const { turn } = lastTurn();
    if (!turn) return null;
    const answer = first(turn, sel.answer);
    if (!answer) return null;
    const chips = every(answer, sel.citation_chip).map((chip) => ({ href: chipUrl(chip) }));
    const text = measuredText(copyWithout(answer, sel.citation_chip));
    // For markdown, each chip becomes a pill link named by its domain: "([site](url))".
    const marked = answer.cloneNode(true);
    every(marked, sel.citation_chip).forEach((chip) => {
      const url = chipUrl(chip);
      if (!url) {
        chip.remove();
        return;
      }
      chip.replaceWith(pill(url, hostOf(url)));
    });
    const model = first(turn, sel.model_label);
    return {
      html: answer.innerHTML,
      text,
      chips,
      markdown_html: marked.innerHTML,
      model: model ? textOf(model) : null,
      search_steps: !!first(turn, sel.search_steps),
      sources_tab: !!first(turn, sel.sources_tab),
    };
  }
  case 'sources_tab': {
    const { turn } = lastTurn();
    const tab = turn ? first(turn, sel.sources_tab) : null;
    return shown(tab) ? tab : null;
  }
  case 'sources': {
    const { turn } = lastTurn();
    const panel = (turn && firstShown(turn, sel.sources_panel)) || firstShown(document, sel.sources_panel);
    if (!panel) return null;
    return listedSources(panel);
  }
  default:
    throw new Error('unknown page mode ' + mode);
}
