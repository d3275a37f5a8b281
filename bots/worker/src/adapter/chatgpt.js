// Reads chatgpt.com for the ChatGPT adapter, after the helpers of dom.js (`mode`, `sel`, ...).
// The modes:
//   probe          the state the wait loop needs (login wall, challenge, stop button, thinking,
//                  streaming markers, the answer being waited for and its text so far, the A/B
//                  comparison, whether the Sources button is there and how it was found)
//   composer       the prompt box element, or null
//   composer_text  the text in the prompt box
//   send           the send button element when it is enabled, or null
//   ab_prefer      the "I prefer this response" button of the first response, when enabled
//   extract        the answer: html, text without citation pills and widgets, links, model,
//                  search shown, the turn's canvas cards (title, body html); read from the whole
//                  message (less thinking, controls and cards) when no answer element matches
//   sources_button the button that opens the sources list (by selector, else by its text "Sources")
//   sources_more   an "N more" button inside the open sources panel, or null
//   sources        the sources list: {links: [{href, title}] in the panel's order, via}
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

// The address behind chatgpt.com's outbound redirect (`https://chatgpt.com/link?url=...`,
// be-visible 2026-05-08), else `href` as it is.
function realHref(href) {
  try {
    const url = new URL(href, location.href);
    const host = url.hostname.replace(/^www\./, '');
    if (host === 'chatgpt.com' && url.pathname === '/link' && url.searchParams.get('url')) {
      return url.searchParams.get('url');
    }
  } catch (_) {
    // not a URL: left as it is
  }
  return href;
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

// Everything that is never answer text: thinking blocks, pills, widgets, canvas cards (read on
// their own) and, through copyWithoutAll, controls.
function notAnswer() {
  return [sel.thinking, sel.citation_pill, sel.answer_noise, sel.search_indicator, sel.action_bar, sel.error, sel.document_card];
}

// The message's answer element: the first one outside a canvas card (a card's body may be
// markdown too).
function answerMarkdown(message) {
  return every(message, sel.answer_markdown).find((el) => !matches(el, sel.document_card)) || null;
}

// The canvas cards of the message's turn: each one's title and body, as the page shows them.
function cards(message) {
  return every(turnOf(message), sel.document_card).map((card) => {
    const title = first(card, sel.document_title);
    const body = first(card, sel.document_body);
    return { title: title ? textOf(title) : '', html: body ? body.innerHTML : '' };
  });
}

// The Sources button of the message's turn: the manifest's (the last one), else a button whose
// whole text is "Sources". `via` says which.
function sourcesButton(message) {
  const turn = turnOf(message);
  const listed = every(turn, sel.sources_button).filter(shown);
  if (listed.length) return { button: listed[listed.length - 1], via: 'selector' };
  const byText = Array.from(turn.querySelectorAll('button')).filter(
    (b) => shown(b) && /^\s*sources\s*$/i.test(b.innerText || b.textContent || ''),
  );
  if (byText.length) return { button: byText[byText.length - 1], via: 'text' };
  return { button: null, via: null };
}

// The open sources panel: the manifest's container that is shown, or null.
function sourcesPanel() {
  return firstShown(document, sel.sources_panel);
}

switch (mode) {
  case 'probe': {
    const composer = firstShown(document, sel.composer);
    const send = firstShown(document, sel.send_button);
    const { count, message, comparison, prefer } = answer();
    let last = null;
    let thinking = false;
    let streaming = false;
    if (message) {
      const turn = turnOf(message);
      const markdown = answerMarkdown(message);
      const error = first(message, sel.error) || first(turn, sel.error);
      const html = markdown ? markdown.innerHTML : message.innerHTML;
      const text = markdown
        ? markdown.textContent || ''
        : copyWithoutAll(message, ...notAnswer()).textContent || '';
      thinking = !!firstShown(turn, sel.thinking);
      streaming = !!each(sel.streaming_marker, (s) => message.matches(s) || message.querySelector(s) || turn.querySelector(s));
      const sources = comparison ? { via: null } : sourcesButton(message);
      last = {
        text_len: text.trim().length,
        text: text.trim(),
        signature: signature(html),
        action_bar: !!first(turn, sel.action_bar),
        error: error ? textOf(error) : null,
        turn: !!closest(message, sel.turn),
        markdown: !!markdown,
        sources_button: sources.via,
        documents: every(turn, sel.document_card).length,
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
      streaming,
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
    const markdown = answerMarkdown(message);
    const turn = turnOf(message);
    const root = markdown || message;
    const links = every(root, sel.citation_link).map((a) => ({ href: realHref(hrefOf(a)), text: textOf(a) }));
    // Text: without pills and widgets; by fallback (the whole message less thinking blocks and
    // controls) when no answer element matched.
    const text = markdown
      ? measuredText(copyWithoutAll(markdown, sel.citation_pill, sel.answer_noise))
      : fallbackRead(message, ...notAnswer()).text;
    // HTML for markdown: pills kept (they become links), widgets dropped, redirects unwrapped.
    const html = markdown ? markdown.cloneNode(true) : copyWithoutAll(message, ...notAnswer());
    for (const s of sel.answer_noise || []) {
      try {
        html.querySelectorAll(s).forEach((el) => {
          if (!matches(el, sel.citation_pill) && !el.querySelector((sel.citation_pill || []).join(',') || 'x-none')) el.remove();
        });
      } catch (_) {
        // an invalid selector must not keep the others from being removed
      }
    }
    html.querySelectorAll('a[href]').forEach((a) => a.setAttribute('href', realHref(a.getAttribute('href'))));
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
      html: html.innerHTML,
      text,
      links,
      model,
      search: search ? textOf(search) : null,
      comparison: !!comparison,
      fallback: !markdown,
      documents: cards(message),
    };
  }
  case 'sources_button': {
    const { message, comparison } = answer();
    // A comparison has no sources of its own until one response is chosen.
    if (!message || comparison) return null;
    return clickable(sourcesButton(message).button);
  }
  case 'sources_more': {
    const panel = sourcesPanel();
    if (!panel) return null;
    const more = Array.from(panel.querySelectorAll('button')).find(
      (b) => shown(b) && /^\s*\d+\s+more\s*$/i.test(b.innerText || b.textContent || ''),
    );
    return more ? clickable(more) : null;
  }
  case 'sources': {
    // The manifest's source links; else every web link in the open panel, whatever it is.
    const listed = every(document, sel.sources_link);
    let links = listed;
    let via = listed.length ? 'link' : null;
    if (!links.length) {
      const panel = sourcesPanel();
      links = panel ? Array.from(panel.querySelectorAll('a[href]')).filter((a) => /^https?:/i.test(hrefOf(a))) : [];
      via = links.length ? 'panel' : null;
    }
    return {
      via,
      links: links.map((a) => {
        const title = first(a, sel.sources_title);
        return { href: realHref(hrefOf(a)), title: title ? textOf(title) : textOf(a) };
      }),
    };
  }
  default:
    throw new Error('unknown page mode ' + mode);
}
