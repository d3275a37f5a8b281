// Reads chatgpt.com for the ChatGPT adapter, after the helpers of dom.js (`mode`, `sel`, ...).
// The modes:
//   probe          the state the wait loop needs (login wall, challenge, stop button, thinking,
//                  the answer being waited for, the A/B comparison, ...)
//   composer       the prompt box element, or null
//   composer_text  the text in the prompt box
//   send           the send button element when it is enabled, or null
//   ab_prefer      the "I prefer this response" button of the first response, when enabled
//   extract        the answer: html, text without citation pills, links, model, search shown
//   sources_button the button that opens the sources list, or null
//   sources        the sources list: [{href, title}] in the panel's order
// No element returned for a click is ever the "Answer now" button (role answer_now).

// Whether `el` or an element around it matches one of the selectors.
function matches(el, list) {
  return !!each(list, (s) => el.matches(s) || el.closest(s));
}

// What the bot may click: never "Answer now", whatever selector drift led to it. Brought to the
// middle of the viewport first, where no sticky header or composer covers it.
function clickable(el) {
  if (!el || matches(el, sel.answer_now)) return null;
  el.scrollIntoView({ block: 'center', inline: 'nearest' });
  return el;
}

// The answer being waited for: the last assistant message, or, while the last turn shows the
// A/B comparison, the first candidate's message (never the second, never both).
function answer() {
  const { count, last } = lastOf(document, sel.assistant_message);
  if (!last) return { count, message: null, comparison: null, prefer: null };
  const comparison = closest(last, sel.ab_comparison) || first(turnOf(last), sel.ab_comparison);
  if (!comparison) return { count, message: last, comparison: null, prefer: null };
  const candidates = every(comparison, sel.ab_response);
  const chosen = candidates.length ? candidates[0] : comparison;
  const message = first(chosen, sel.assistant_message) || last;
  return { count, message, comparison, prefer: first(chosen, sel.ab_prefer) };
}

switch (mode) {
  case 'probe': {
    const composer = firstShown(document, sel.composer);
    const send = firstShown(document, sel.send_button);
    const { count, message, comparison, prefer } = answer();
    let last = null;
    let thinking = false;
    if (message) {
      const turn = turnOf(message);
      const markdown = first(message, sel.answer_markdown);
      const error = first(message, sel.error) || first(turn, sel.error);
      const html = markdown ? markdown.innerHTML : '';
      thinking = !!firstShown(turn, sel.thinking);
      last = {
        text_len: markdown ? (markdown.textContent || '').trim().length : 0,
        signature: signature(html),
        action_bar: !!first(turn, sel.action_bar),
        error: error ? textOf(error) : null,
      };
    }
    const pageError = firstShown(document, sel.error);
    return {
      composer: !!composer,
      login_wall: !!firstShown(document, sel.login_wall),
      challenge: !!first(document, sel.challenge),
      title: document.title || '',
      ready: document.readyState === 'complete',
      stop: !!firstShown(document, sel.stop_button),
      thinking,
      send: !!send,
      send_enabled: enabled(send),
      messages: count,
      last,
      page_error: pageError ? textOf(pageError) : null,
      ab: comparison ? { prefer_ready: shown(prefer) && enabled(prefer) } : null,
    };
  }
  case 'composer':
    return clickable(firstShown(document, sel.composer));
  case 'composer_text':
    return composerText(firstShown(document, sel.composer));
  case 'send': {
    const send = firstShown(document, sel.send_button);
    return enabled(send) ? clickable(send) : null;
  }
  case 'ab_prefer': {
    const { prefer } = answer();
    return shown(prefer) && enabled(prefer) ? clickable(prefer) : null;
  }
  case 'extract': {
    const { message, comparison } = answer();
    if (!message) return null;
    const markdown = first(message, sel.answer_markdown);
    if (!markdown) return null;
    const turn = turnOf(message);
    const links = every(markdown, sel.citation_link).map((a) => ({ href: hrefOf(a), text: textOf(a) }));
    const text = measuredText(copyWithout(markdown, sel.citation_pill));
    let model = null;
    for (const attr of sel.model_attribute || []) {
      const owner = message.hasAttribute(attr) ? message : message.querySelector('[' + attr + ']');
      if (owner && owner.getAttribute(attr)) {
        model = owner.getAttribute(attr);
        break;
      }
    }
    const search = first(turn, sel.search_indicator);
    return {
      html: markdown.innerHTML,
      text,
      links,
      model,
      search: search ? textOf(search) : null,
      comparison: !!comparison,
    };
  }
  case 'sources_button': {
    const { message, comparison } = answer();
    // A comparison has no sources of its own until one response is chosen.
    if (!message || comparison) return null;
    const button = first(turnOf(message), sel.sources_button);
    return shown(button) ? clickable(button) : null;
  }
  case 'sources':
    return listedSources(document);
  default:
    throw new Error('unknown page mode ' + mode);
}
