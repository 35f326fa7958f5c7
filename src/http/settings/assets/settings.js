/* Settings > API Tokens page script (tokengate).
 *
 * Plain browser JavaScript, no framework, no build step. Served under a CSP that
 * allows only same-origin scripts and styles, so this file never uses inline
 * styles, innerHTML, eval or inline handlers. Every piece of server data is
 * inserted as text (createTextNode / textContent) or through setAttribute.
 *
 * The plaintext of a new token lives only in the value of the read-only input
 * #tg-new-token-value, from the moment the create/rotate response arrives until
 * the user presses Done (or the page is hidden). It is never logged, stored,
 * put in the URL, in the list or in any attribute.
 */
(function () {
  'use strict';

  var TEXT = {
    sessionExpired: 'Your session has expired. Sign in again.',
    signIn: 'Sign in to manage API tokens.',
    network: 'Could not reach the server. Check your connection and try again.',
    nameRequired: 'Enter a name for the token.',
    dateRequired: 'Choose an expiry date.',
    dateInPast: 'Choose an expiry date in the future.',
    scopeRequired: 'Choose at least one scope, or choose All scopes.',
    noToken: 'The server did not return a token. Try again.'
  };
  var AUDIT_PAGE_SIZE = 50;
  var DAY_MS = 86400000;
  var GRACE_LABELS = { 3600: '1 hour', 86400: '1 day', 604800: '7 days' };
  // Rotating keeps the old token for an hour by default: long enough to
  // deploy the new one without failed requests (the dialog says so, and
  // offers no grace for a token that may have leaked).
  var DEFAULT_GRACE = 3600;

  var state = {
    base: '',
    account: null,
    tokens: [],
    creating: false,
    sessionExpired: false,
    signedIn: false, // a request has succeeded: a later 401 means the session ended
    auditNext: null,
    auditLoading: false,
    auditUnavailable: false, // the server keeps no security log (its /audit is 404)
    auditGen: 0,
    refreshGen: 0,
    scopesBuilt: false,
    newToken: null, // { section, input, copyTimer }
    dialogResolve: null
  };

  var $ = function (id) { return document.getElementById(id); };

  // ---------------------------------------------------------------- helpers

  function append(node, kids) {
    if (kids === null || kids === undefined) { return node; }
    if (!Array.isArray(kids)) { kids = [kids]; }
    kids.forEach(function (kid) {
      if (kid === null || kid === undefined || kid === false) { return; }
      if (Array.isArray(kid)) { append(node, kid); return; }
      node.appendChild(typeof kid === 'object' ? kid : document.createTextNode(String(kid)));
    });
    return node;
  }

  // Creates an element. Attribute values go through setAttribute, children
  // through text nodes: data never reaches an HTML parser.
  function el(tag, attrs, kids) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        var value = attrs[key];
        if (value === null || value === undefined || value === false) { return; }
        node.setAttribute(key, value === true ? '' : String(value));
      });
    }
    return append(node, kids);
  }

  // A user-chosen name: isolated bidi run so U+202E and friends cannot
  // reorder the surrounding text, wraps anywhere when it is very long.
  function nameNode(name, extraClass) {
    return el('span', { 'class': 'tg-text tg-name' + (extraClass ? ' ' + extraClass : ''), dir: 'auto' },
      String(name === null || name === undefined ? '' : name));
  }

  function quotedName(name) {
    return ['\u201C', nameNode(name), '\u201D'];
  }

  var numberFormat = new Intl.NumberFormat('en-US');
  var dateFormat = new Intl.DateTimeFormat('en-US',
    { year: 'numeric', month: 'short', day: 'numeric', timeZone: 'UTC' });
  var dateTimeFormat = new Intl.DateTimeFormat('en-US',
    { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
      hourCycle: 'h23', timeZone: 'UTC' });
  var relativeFormat = typeof Intl.RelativeTimeFormat === 'function'
    ? new Intl.RelativeTimeFormat('en', { numeric: 'always' }) : null;

  function formatNumber(n) { return numberFormat.format(Number(n) || 0); }

  function parseTime(value) {
    if (typeof value !== 'string' || value === '') { return null; }
    var d = new Date(value);
    return isNaN(d.getTime()) ? null : d;
  }

  function formatDate(d) { return dateFormat.format(d); }
  function formatDateTime(d) { return dateTimeFormat.format(d) + ' UTC'; }

  function relativeTime(d, now) {
    var diff = d.getTime() - now;
    var abs = Math.abs(diff);
    if (abs < 45000) { return 'just now'; }
    var unit, size;
    if (abs < 3600000) { unit = 'minute'; size = 60000; }
    else if (abs < DAY_MS) { unit = 'hour'; size = 3600000; }
    else if (abs < 30 * DAY_MS) { unit = 'day'; size = DAY_MS; }
    else if (abs < 365 * DAY_MS) { unit = 'month'; size = 30 * DAY_MS; }
    else { unit = 'year'; size = 365 * DAY_MS; }
    var n = Math.max(1, Math.round(abs / size));
    if (relativeFormat) { return relativeFormat.format(diff < 0 ? -n : n, unit); }
    var words = n + ' ' + unit + (n === 1 ? '' : 's');
    return diff < 0 ? words + ' ago' : 'in ' + words;
  }

  function timeNode(d, text) {
    return el('time', { datetime: d.toISOString(), title: formatDateTime(d) }, text);
  }

  // RFC 3339 in UTC without fractional seconds: 2026-03-05T12:00:00Z
  function toRfc3339(d) { return d.toISOString().replace(/\.\d{3}Z$/, 'Z'); }

  function todayUtc() { return new Date().toISOString().slice(0, 10); }

  function planLabel(plan) {
    var s = String(plan || 'unknown').replace(/[_-]+/g, ' ').trim();
    return s.charAt(0).toUpperCase() + s.slice(1) + ' plan';
  }

  // ------------------------------------------------------------------- API

  function ApiError(message, status) {
    this.message = message;
    this.status = status;
  }

  function api(method, path, body) {
    var options = {
      method: method,
      credentials: 'same-origin',
      cache: 'no-store',
      redirect: 'manual', // a redirect to a sign-in page means the session is gone
      referrerPolicy: 'no-referrer',
      headers: { 'Accept': 'application/json' }
    };
    if (method !== 'GET') {
      options.headers['Content-Type'] = 'application/json';
      if (body !== undefined) { options.body = JSON.stringify(body); }
    }
    return fetch(state.base + path, options).then(function (res) {
      if (res.type === 'opaqueredirect' || res.status === 401) {
        throw new ApiError(state.signedIn ? TEXT.sessionExpired : TEXT.signIn, 401);
      }
      if (res.ok) { state.signedIn = true; }
      return res.json().catch(function () { return null; }).then(function (envelope) {
        if (res.ok && envelope && envelope.success === true) { return envelope.data; }
        var message = envelope && typeof envelope.error === 'string' && envelope.error
          ? envelope.error
          : 'Something went wrong (HTTP ' + res.status + '). Try again.';
        throw new ApiError(message, res.status);
      });
    }, function () {
      throw new ApiError(TEXT.network, 0);
    });
  }

  // ------------------------------------------------------ messages & status

  function showError(message) {
    var box = $('tg-alert');
    box.textContent = message;
    if (box.scrollIntoView) { box.scrollIntoView({ block: 'nearest' }); }
  }

  function clearError() {
    if (!state.sessionExpired) { $('tg-alert').textContent = ''; }
  }

  function announce(message) { $('tg-status').textContent = message; }

  function handleError(err) {
    var message = err && typeof err.message === 'string' ? err.message : 'Something went wrong. Try again.';
    if (err && err.status === 401) { sessionExpired(); return; }
    showError(message);
  }

  // Never signed in (a first visit), or signed out since: either way
  // nothing can be changed until the user signs in.
  function sessionExpired() {
    state.sessionExpired = true;
    showError(state.signedIn ? TEXT.sessionExpired : TEXT.signIn);
    $('tg-create-fieldset').disabled = true;
    $('tg-generate').disabled = true;
    document.querySelectorAll('#tg-tokens-body button, #tg-audit-more').forEach(function (b) {
      b.disabled = true;
    });
  }

  // --------------------------------------------------------------- account

  function renderAccount(a) {
    $('tg-account-id').textContent = String(a.account_id || '');
    $('tg-signed-in').hidden = false;

    // Signed in, but the account is not in tokengate: only an administrator
    // can create it (the sign-in names accounts; it never creates them).
    var missing = a.plan === null || a.plan === undefined;
    var noAccount = $('tg-no-account');
    noAccount.hidden = !missing;
    noAccount.textContent = missing
      ? 'Your account (' + String(a.account_id || '') + ') has no API plan yet. ' +
        'An administrator must create it before you can generate tokens.' : '';
    $('tg-plan').hidden = missing;

    var plan = planLabel(a.plan);
    if (a.api_access) {
      plan += ' \u00B7 ' + formatNumber(a.requests_per_hour) + ' requests per hour per token';
    }
    $('tg-plan').textContent = plan;

    var acct = $('tg-account-limit');
    var hasAccountLimit = a.api_access && typeof a.account_requests_per_hour === 'number';
    acct.hidden = !hasAccountLimit;
    acct.textContent = hasAccountLimit
      ? formatNumber(a.account_requests_per_hour) + ' requests per hour for the whole account' : '';

    var count = $('tg-token-count');
    var hasCap = typeof a.max_tokens === 'number';
    count.hidden = !hasCap;
    count.textContent = hasCap
      ? formatNumber(a.live_tokens) + ' of ' + formatNumber(a.max_tokens) + ' tokens in use' : '';

    $('tg-upgrade').hidden = !!a.api_access || missing;
    $('tg-create-section').classList.toggle('tg-locked', !a.api_access);

    var capNote = $('tg-cap-note');
    var atCap = a.api_access && hasCap && Number(a.live_tokens) >= a.max_tokens;
    capNote.hidden = !atCap;
    capNote.textContent = atCap
      ? 'You have reached your plan\u2019s limit of ' + formatNumber(a.max_tokens) +
        ' tokens. Revoke one to generate another.' : '';

    if (!state.scopesBuilt) { buildScopes(Array.isArray(a.scopes) ? a.scopes : []); }

    // Generating is possible only with API access (the server checks too).
    var locked = !a.api_access || state.sessionExpired;
    $('tg-create-fieldset').disabled = locked;
    $('tg-generate').disabled = locked || state.creating;
  }

  function buildScopes(scopes) {
    state.scopesBuilt = true;
    var list = $('tg-scope-list');
    list.replaceChildren();
    scopes.forEach(function (scope, i) {
      var id = 'tg-scope-' + i;
      list.appendChild(el('div', { 'class': 'tg-choice' }, [
        el('input', { id: id, type: 'checkbox', name: 'scopes', value: String(scope) }),
        el('label', { 'for': id }, el('code', null, String(scope)))
      ]));
    });
    $('tg-scopes').hidden = scopes.length === 0;
  }

  // ---------------------------------------------------------------- tokens

  function tokenStatus(t, now) {
    var expires = parseTime(t.expires_at);
    if (t.revoked_at) { return { key: 'revoked', label: ['Revoked'] }; }
    if (expires && expires.getTime() <= now) { return { key: 'expired', label: ['Expired'] }; }
    if (t.revoked_reason === 'rotated') {
      return {
        key: 'rotated',
        label: expires ? ['Rotated \u2014 works until ', timeNode(expires, formatDateTime(expires))] : ['Rotated']
      };
    }
    return { key: 'active', label: ['Active'] };
  }

  var STATUS_ORDER = { active: 0, rotated: 1, expired: 2, revoked: 3 };

  function sortTokens(tokens, now) {
    return tokens.slice().sort(function (a, b) {
      var sa = STATUS_ORDER[tokenStatus(a, now).key];
      var sb = STATUS_ORDER[tokenStatus(b, now).key];
      if (sa !== sb) { return sa - sb; }
      return String(b.created_at || '').localeCompare(String(a.created_at || ''));
    });
  }

  function scopesNode(scopes) {
    if (!Array.isArray(scopes) || scopes.indexOf('*') !== -1) {
      return el('span', { 'class': 'tg-scopes-list' }, el('span', { 'class': 'tg-scope tg-scope-all' }, 'All scopes'));
    }
    if (scopes.length === 0) {
      return el('span', { 'class': 'tg-scopes-list' }, el('span', { 'class': 'tg-scope' }, 'No scopes'));
    }
    return el('span', { 'class': 'tg-scopes-list' }, scopes.map(function (s) {
      return el('code', { 'class': 'tg-scope' }, String(s));
    }));
  }

  function expiryNode(t, now) {
    var expires = parseTime(t.expires_at);
    if (!expires) { return el('span', { 'class': 'tg-expiry' }, 'Never expires'); }
    if (expires.getTime() <= now) { return el('span', { 'class': 'tg-expiry tg-expired' }, 'Expired'); }
    return el('span', { 'class': 'tg-expiry' }, ['Expires ', timeNode(expires, formatDate(expires))]);
  }

  function lastUsedNode(t, now) {
    var used = parseTime(t.last_used_at);
    if (!used) { return el('span', { 'class': 'tg-last-used' }, 'Never used'); }
    return el('span', { 'class': 'tg-last-used' }, ['Last used ', timeNode(used, relativeTime(used, now))]);
  }

  function reasonNote(t) {
    if (!t.revoked_at) { return null; }
    var text = t.revoked_reason === 'leaked' ? 'Reported as leaked'
      : t.revoked_reason === 'rotated' ? 'Replaced by rotation' : null;
    var at = parseTime(t.revoked_at);
    var parts = [];
    if (text) { parts.push(text, ' \u00B7 '); }
    if (at) { parts.push(timeNode(at, formatDate(at))); }
    return parts.length ? el('span', { 'class': 'tg-note' }, parts) : null;
  }

  function actionButton(action, label, t) {
    return el('button', {
      type: 'button',
      'class': 'tg-btn tg-btn-small' + (action === 'revoke' ? ' tg-btn-danger-outline' : ''),
      'data-action': action,
      'data-token-id': t.id,
      'aria-label': label + ' token \u201C' + String(t.name) + '\u201D',
      disabled: state.sessionExpired
    }, label);
  }

  function cell(cls, label, content) {
    return el('td', { 'class': cls, role: 'cell', 'data-label': label },
      el('div', { 'class': 'tg-cell-value' }, content));
  }

  // Bidi controls in a name can disguise it ("invoice\u202Egnp.exe" shows as
  // "invoiceexe.png"); the name is isolated either way, this also says so.
  var BIDI_CONTROLS = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/;

  function renderRow(t, now) {
    var status = tokenStatus(t, now);
    var actions = [];
    if (status.key === 'active' && state.account && state.account.api_access) {
      actions.push(actionButton('rotate', 'Rotate', t));
    }
    if (status.key === 'active' || status.key === 'rotated') {
      actions.push(actionButton('revoke', 'Revoke', t));
    }
    var requests = typeof t.requests_24h === 'number' && t.requests_24h > 0
      ? el('span', { 'class': 'tg-note tg-requests' },
        formatNumber(t.requests_24h) + (t.requests_24h === 1 ? ' request' : ' requests') + ' in 24 h')
      : null;
    var created = parseTime(t.created_at);

    return el('tr', {
      'class': 'tg-token tg-token-' + status.key,
      role: 'row',
      'data-token-id': t.id,
      'data-status': status.key
    }, [
      cell('tg-cell-token', 'Token', [
        nameNode(t.name, 'tg-token-name'),
        BIDI_CONTROLS.test(String(t.name))
          ? el('span', { 'class': 'tg-note tg-bidi-warning' }, 'Name contains text-direction characters')
          : null,
        el('span', { 'class': 'tg-token-meta' }, [
          el('code', { 'class': 'tg-token-hint', dir: 'ltr', title: 'Last characters of the token' },
            '\u2026' + String(t.hint || '')),
          scopesNode(t.scopes)
        ])
      ]),
      cell('tg-cell-created', 'Created',
        created ? el('span', { 'class': 'tg-created' }, timeNode(created, formatDate(created))) : '\u2014'),
      cell('tg-cell-activity', 'Activity', [lastUsedNode(t, now), requests]),
      cell('tg-cell-expiry', 'Expiry', expiryNode(t, now)),
      cell('tg-cell-status', 'Status', [
        el('span', { 'class': 'tg-badge tg-badge-' + status.key, 'data-status': status.key }, status.label),
        reasonNote(t)
      ]),
      actions.length
        ? cell('tg-cell-actions', 'Actions', el('span', { 'class': 'tg-row-actions' }, actions))
        : el('td', { 'class': 'tg-cell-actions tg-cell-empty', role: 'cell' })
    ]);
  }

  function renderTokens() {
    var now = Date.now();
    var tokens = sortTokens(state.tokens, now);
    $('tg-tokens-loading').hidden = true;
    $('tg-tokens-empty').hidden = tokens.length !== 0;
    $('tg-tokens').hidden = tokens.length === 0;
    $('tg-tokens-body').replaceChildren.apply($('tg-tokens-body'), tokens.map(function (t) {
      return renderRow(t, now);
    }));
  }

  function findToken(id) {
    for (var i = 0; i < state.tokens.length; i++) {
      if (state.tokens[i].id === id) { return state.tokens[i]; }
    }
    return null;
  }

  // ------------------------------------------------------------ audit log

  var ACTION_TEXT = {
    'token.created': 'Token created',
    'token.revoked': 'Token revoked',
    'token.rotated': 'Token rotated',
    'token.leaked': 'Token reported as leaked and revoked',
    'token.expired': 'Token expired',
    'account.created': 'Account created',
    'account.plan_changed': 'Plan changed',
    'plan.updated': 'Plan limits updated'
  };
  var KNOWN_DETAILS = ['name', 'token_name', 'from', 'to', 'grace_seconds', 'plan', 'source', 'url',
    'new_token_id', 'replaces', 'reason', 'expires_at', 'old_token_stops_at', 'scopes', 'type'];

  function actorText(actor) {
    var a = String(actor || '');
    if (!a) { return null; }
    if (state.account && a === 'settings:' + state.account.account_id) { return 'you'; }
    if (a.indexOf('settings:') === 0) { return 'the settings page'; }
    if (a === 'admin') { return 'an administrator'; }
    if (a === 'cli') { return 'the command line'; }
    return a;
  }

  function auditItem(ev) {
    var at = parseTime(ev.at);
    var details = ev.details && typeof ev.details === 'object' ? ev.details : {};
    var what = [ACTION_TEXT[ev.action] || String(ev.action || 'Event')];

    var tokenName = details.name || details.token_name;
    if (!tokenName && ev.token_id) {
      var t = findToken(ev.token_id);
      if (t) { tokenName = t.name; }
    }
    if (tokenName) { what.push(' ', el('span', { 'class': 'tg-event-token' }, quotedName(tokenName))); }
    else if (ev.token_id) { what.push(' ', el('code', { 'class': 'tg-event-token' }, String(ev.token_id))); }

    var extra = [];
    if (typeof details.from === 'string' && typeof details.to === 'string') {
      extra.push('from ' + planLabel(details.from).replace(/ plan$/, '') +
        ' to ' + planLabel(details.to).replace(/ plan$/, ''));
    } else if (typeof details.plan === 'string') {
      extra.push('plan ' + details.plan);
    }
    if (typeof details.grace_seconds === 'number') {
      extra.push(details.grace_seconds > 0
        ? 'old token kept for ' + (GRACE_LABELS[details.grace_seconds] || details.grace_seconds + ' s')
        : 'old token stopped at once');
    }
    var expires = typeof details.expires_at === 'string' ? parseTime(details.expires_at) : null;
    if (expires) { extra.push('expires ' + formatDate(expires)); }
    if (Array.isArray(details.scopes) && details.scopes.indexOf('*') === -1) {
      extra.push('scopes ' + details.scopes.map(String).join(', '));
    }
    if (typeof details.source === 'string' && details.source) { extra.push('reported by ' + details.source); }
    if (typeof details.url === 'string' && details.url) { extra.push('found at ' + details.url); }
    Object.keys(details).forEach(function (key) {
      var v = details[key];
      if (KNOWN_DETAILS.indexOf(key) !== -1) { return; }
      if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') {
        extra.push(key.replace(/_/g, ' ') + ': ' + String(v));
      }
    });

    var who = [];
    var actor = actorText(ev.actor);
    if (actor) { who.push('by ' + actor); }
    if (ev.source_ip) { who.push('from ' + String(ev.source_ip)); }

    return el('li', { 'class': 'tg-event', 'data-event-id': ev.id, 'data-action': ev.action }, [
      el('span', { 'class': 'tg-event-time' }, at ? timeNode(at, formatDateTime(at)) : '\u2014'),
      el('span', { 'class': 'tg-event-body' }, [
        el('span', { 'class': 'tg-event-what' }, what),
        extra.length ? el('span', { 'class': 'tg-event-details' }, extra.join(' \u00B7 ')) : null,
        who.length ? el('span', { 'class': 'tg-event-who' }, who.join(' \u00B7 ')) : null
      ])
    ]);
  }

  // more=false reloads the first page (after every change); an older reload
  // that answers late is ignored.
  function loadAudit(more) {
    if (state.auditUnavailable || (more && state.auditLoading)) { return Promise.resolve(); }
    var gen = more ? state.auditGen : ++state.auditGen;
    state.auditLoading = true;
    var path = '/audit?limit=' + AUDIT_PAGE_SIZE;
    if (more && state.auditNext) { path += '&before=' + encodeURIComponent(state.auditNext); }
    var button = $('tg-audit-more');
    button.disabled = true;
    return api('GET', path).then(function (page) {
      if (gen !== state.auditGen) { return; }
      var events = page && Array.isArray(page.events) ? page.events : [];
      var list = $('tg-audit-list');
      if (!more) { list.replaceChildren(); }
      events.forEach(function (ev) { list.appendChild(auditItem(ev)); });
      state.auditNext = page && page.next ? page.next : null;
      $('tg-audit-loading').hidden = true;
      $('tg-audit-error').hidden = true;
      list.hidden = list.childElementCount === 0;
      $('tg-audit-empty').hidden = list.childElementCount !== 0;
      button.hidden = !state.auditNext;
    }, function (err) {
      if (err && err.status === 401) { throw err; }
      if (gen !== state.auditGen) { return; }
      // The log is secondary: report its failure in place, not in the page alert.
      $('tg-audit-loading').hidden = true;
      if (err && err.status === 404) {
        // This server keeps no security log: the section goes away.
        state.auditUnavailable = true;
        $('tg-audit-section').hidden = true;
        return;
      }
      var box = $('tg-audit-error');
      box.textContent = 'The security log could not be loaded: ' + err.message;
      box.hidden = false;
    }).then(function () {
      if (gen === state.auditGen) { state.auditLoading = false; button.disabled = state.sessionExpired; }
    }, function (err) {
      if (gen === state.auditGen) { state.auditLoading = false; button.disabled = state.sessionExpired; }
      throw err;
    });
  }

  // ---------------------------------------------------------------- refresh

  // Account and tokens are fetched in parallel; the list is rendered once the
  // account is known (it decides whether Rotate is offered).
  function refresh() {
    var gen = ++state.refreshGen;
    return Promise.all([api('GET', '/account'), api('GET', '/tokens')]).then(function (results) {
      if (gen !== state.refreshGen) { return; } // a newer refresh is on its way
      state.account = results[0] || {};
      renderAccount(state.account);
      state.tokens = Array.isArray(results[1]) ? results[1] : [];
      renderTokens();
      return loadAudit(false);
    }, function (err) {
      // Not signed in: nothing failed, there is just nothing to show yet.
      var signedOut = err && err.status === 401;
      if (!state.tokens.length) {
        $('tg-tokens-loading').textContent = signedOut
          ? 'Sign in to see your tokens.' : 'Could not load tokens.';
      }
      if ($('tg-audit-list').childElementCount === 0) {
        $('tg-audit-loading').hidden = true;
        if (signedOut) { $('tg-audit-section').hidden = true; }
      }
      throw err;
    });
  }

  // ------------------------------------------------------------ create form

  function updateExpiryUi() {
    var choice = $('tg-expiry').value;
    var dateField = $('tg-expiry-date-field');
    var dateInput = $('tg-expiry-date');
    var help = $('tg-expiry-help');
    dateField.hidden = choice !== 'custom';
    dateInput.min = todayUtc();
    help.classList.toggle('tg-help-warn', choice === 'never');
    if (choice === 'never') {
      help.textContent = 'The token never expires. It keeps working until you revoke it.';
    } else if (choice === 'custom') {
      var d = /^\d{4}-\d{2}-\d{2}$/.test(dateInput.value) ? parseTime(dateInput.value + 'T23:59:59Z') : null;
      help.textContent = d
        ? 'The token will expire on ' + formatDate(d) + ' at 23:59 UTC.'
        : 'The token will expire at the end of the chosen day (UTC).';
    } else {
      var n = parseInt(choice, 10);
      help.textContent = 'The token will expire on ' + formatDate(new Date(Date.now() + n * DAY_MS)) + '.';
    }
  }

  // Returns an RFC 3339 string, null (no expiry) or undefined after showing an error.
  function chosenExpiry() {
    var choice = $('tg-expiry').value;
    if (choice === 'never') { return null; }
    if (choice === 'custom') {
      var value = $('tg-expiry-date').value;
      if (!/^\d{4}-\d{2}-\d{2}$/.test(value)) {
        showError(TEXT.dateRequired);
        $('tg-expiry-date').focus();
        return undefined;
      }
      var iso = value + 'T23:59:59Z';
      var d = parseTime(iso);
      if (!d || d.getTime() <= Date.now()) {
        showError(TEXT.dateInPast);
        $('tg-expiry-date').focus();
        return undefined;
      }
      return iso;
    }
    var days = parseInt(choice, 10);
    if (!(days > 0)) { days = 30; }
    return toRfc3339(new Date(Date.now() + days * DAY_MS));
  }

  // Returns an array of scopes, null (all scopes: omit the field) or undefined after an error.
  function chosenScopes() {
    if ($('tg-scopes').hidden || !$('tg-scope-mode-some').checked) { return null; }
    var picked = [];
    document.querySelectorAll('#tg-scope-list input[name="scopes"]').forEach(function (box) {
      if (box.checked) { picked.push(box.value); }
    });
    if (picked.length === 0) {
      showError(TEXT.scopeRequired);
      var first = document.querySelector('#tg-scope-list input');
      if (first) { first.focus(); }
      return undefined;
    }
    return picked;
  }

  function updateScopeUi() {
    var some = $('tg-scope-mode-some').checked;
    $('tg-scope-list').hidden = !some;
  }

  function onCreate(event) {
    event.preventDefault();
    if (state.creating || state.sessionExpired) { return; }
    if (!state.account || !state.account.api_access || $('tg-create-fieldset').disabled) { return; }
    clearError();

    var nameInput = $('tg-name');
    var name = nameInput.value.trim();
    if (!name) {
      nameInput.setAttribute('aria-invalid', 'true');
      showError(TEXT.nameRequired);
      nameInput.focus();
      return;
    }
    nameInput.removeAttribute('aria-invalid');
    var expiresAt = chosenExpiry();
    if (expiresAt === undefined) { return; }
    var scopes = chosenScopes();
    if (scopes === undefined) { return; }

    var body = { name: name, expires_at: expiresAt };
    if (scopes) { body.scopes = scopes; }

    state.creating = true;
    var button = $('tg-generate');
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    api('POST', '/tokens', body).then(function (data) {
      nameInput.value = '';
      showNewToken(data, null);
      announce('Token created. Copy it now: it will not be shown again.');
      return refresh();
    }).catch(handleError).then(function () {
      state.creating = false;
      button.disabled = $('tg-create-fieldset').disabled;
      button.removeAttribute('aria-busy');
    });
  }

  // ------------------------------------------------------ new token panel

  // Takes the token out of the response object, shows it, and keeps no other copy.
  function showNewToken(data, graceSeconds) {
    var secret = data && typeof data.token === 'string' ? data.token : '';
    if (data) { data.token = null; }
    if (!secret) { showError(TEXT.noToken); return; }
    hideNewToken(false);

    var fragment = $('tg-new-token-template').content.cloneNode(true);
    var section = fragment.querySelector('#tg-new-token');
    var rotated = graceSeconds !== null;
    section.setAttribute('data-kind', rotated ? 'rotated' : 'created');
    section.querySelector('#tg-new-token-heading').textContent = rotated ? 'Token rotated' : 'Your new token';

    var expires = parseTime(data.expires_at);
    var forLine = ['For ', el('strong', null, quotedName(data.name)), ' \u00B7 ',
      expires ? ['Expires ', timeNode(expires, formatDate(expires))] : 'Never expires'];
    if (rotated) {
      var old = data.replaces || {};
      var oldEnd = parseTime(old.expires_at);
      forLine.push('. ', graceSeconds > 0 && oldEnd
        ? ['The old token works until ', timeNode(oldEnd, formatDateTime(oldEnd)), '.']
        : 'The old token no longer works.');
    }
    append(section.querySelector('#tg-new-token-for'), forLine);

    var input = section.querySelector('#tg-new-token-value');
    input.value = secret;
    secret = null;

    var panel = { section: section, input: input, copyTimer: 0 };
    section.querySelector('#tg-copy').addEventListener('click', function () { copyToken(panel); });
    section.querySelector('#tg-done').addEventListener('click', function () { hideNewToken(true); });
    input.addEventListener('focus', function () { input.select(); });

    $('tg-new-token-slot').appendChild(fragment);
    state.newToken = panel;
    if (section.scrollIntoView) { section.scrollIntoView({ block: 'nearest' }); }
    input.focus();
    input.select();
  }

  function hideNewToken(moveFocus) {
    var panel = state.newToken;
    if (!panel) { return; }
    state.newToken = null;
    clearTimeout(panel.copyTimer);
    panel.input.value = '';
    panel.section.remove();
    panel.input = null;
    panel.section = null;
    if (moveFocus) {
      var target = $('tg-create-fieldset').disabled ? $('tg-tokens-heading') : $('tg-name');
      target.focus();
    }
  }

  function setCopyStatus(panel, text, ok) {
    var status = panel.section.querySelector('#tg-copy-status');
    status.textContent = text;
    status.classList.toggle('tg-copy-ok', !!ok);
    clearTimeout(panel.copyTimer);
    panel.copyTimer = setTimeout(function () {
      if (panel.section) { status.textContent = ''; status.classList.remove('tg-copy-ok'); }
    }, ok ? 2500 : 8000);
  }

  function copyFallback(panel) {
    var input = panel.input;
    if (!input) { return; }
    input.focus();
    input.select();
    var copied = false;
    try { copied = document.execCommand('copy'); } catch (e) { copied = false; }
    if (copied) { setCopyStatus(panel, 'Copied', true); }
    else { setCopyStatus(panel, 'Selected. Press Ctrl+C (\u2318C on a Mac) to copy.', false); }
  }

  function copyToken(panel) {
    if (!panel.input) { return; }
    var clipboard = navigator.clipboard;
    if (!clipboard || typeof clipboard.writeText !== 'function') { copyFallback(panel); return; }
    clipboard.writeText(panel.input.value).then(function () {
      if (panel.input) { setCopyStatus(panel, 'Copied', true); }
    }, function () {
      copyFallback(panel);
    });
  }

  // ------------------------------------------------------------- dialogs

  // Opens the confirmation dialog; resolves to null (cancelled) or
  // { grace: seconds } when confirmed.
  function confirmAction(options) {
    var dialog = $('tg-dialog');
    $('tg-dialog-title').textContent = options.title;
    $('tg-dialog-message').replaceChildren();
    append($('tg-dialog-message'), options.message);
    $('tg-dialog-confirm').textContent = options.confirmLabel;
    $('tg-dialog-confirm').className = 'tg-btn ' + (options.danger ? 'tg-btn-danger' : 'tg-btn-primary');
    $('tg-grace-field').hidden = !options.grace;
    $('tg-grace').value = String(DEFAULT_GRACE);
    dialog.setAttribute('data-kind', options.kind);

    if (typeof dialog.showModal !== 'function') {
      var ok = window.confirm($('tg-dialog-message').textContent);
      return Promise.resolve(ok ? { grace: options.grace ? DEFAULT_GRACE : 0 } : null);
    }
    return new Promise(function (resolve) {
      state.dialogResolve = resolve;
      dialog.returnValue = '';
      dialog.showModal();
      $('tg-dialog-cancel').focus();
    });
  }

  function onDialogClose() {
    var dialog = $('tg-dialog');
    var resolve = state.dialogResolve;
    state.dialogResolve = null;
    if (!resolve) { return; }
    var grace = parseInt($('tg-grace').value, 10);
    resolve(dialog.returnValue === 'confirm' ? { grace: isNaN(grace) ? DEFAULT_GRACE : grace } : null);
  }

  function setRowBusy(id, busy) {
    document.querySelectorAll('#tg-tokens-body button[data-token-id]').forEach(function (b) {
      if (b.getAttribute('data-token-id') === id) { b.disabled = busy || state.sessionExpired; }
    });
  }

  function onRevoke(t) {
    confirmAction({
      kind: 'revoke',
      title: 'Revoke token',
      message: ['Revoke token ', quotedName(t.name), '? Apps using it will stop working immediately.'],
      confirmLabel: 'Revoke',
      danger: true,
      grace: false
    }).then(function (answer) {
      if (!answer) { return; }
      clearError();
      setRowBusy(t.id, true);
      return api('DELETE', '/tokens/' + encodeURIComponent(t.id)).then(function () {
        announce('Token revoked.');
        return refresh().then(function () { $('tg-tokens-heading').focus(); });
      }).catch(function (err) {
        setRowBusy(t.id, false);
        handleError(err);
      });
    });
  }

  function onRotate(t) {
    confirmAction({
      kind: 'rotate',
      title: 'Rotate token',
      message: ['Rotate token ', quotedName(t.name),
        '? A new token replaces it. Apps using the old one stop working when the grace period ends.'],
      confirmLabel: 'Rotate',
      danger: false,
      grace: true
    }).then(function (answer) {
      if (!answer) { return; }
      clearError();
      setRowBusy(t.id, true);
      return api('POST', '/tokens/' + encodeURIComponent(t.id) + '/rotate', { grace_seconds: answer.grace })
        .then(function (data) {
          showNewToken(data, answer.grace);
          announce('Token rotated. Copy the new token now: it will not be shown again.');
          return refresh();
        }).catch(function (err) {
          setRowBusy(t.id, false);
          handleError(err);
        });
    });
  }

  function onListClick(event) {
    var button = event.target.closest('button[data-action]');
    if (!button || button.disabled) { return; }
    var t = findToken(button.getAttribute('data-token-id'));
    if (!t) { return; }
    if (button.getAttribute('data-action') === 'revoke') { onRevoke(t); }
    else if (button.getAttribute('data-action') === 'rotate') { onRotate(t); }
  }

  // ------------------------------------------------------------------ init

  function init() {
    var base = document.body.getAttribute('data-api-base') || '';
    if (base === '' || base.indexOf('{{') !== -1) { base = location.pathname; }
    state.base = base.replace(/\/+$/, '');

    $('tg-create-form').addEventListener('submit', onCreate);
    $('tg-expiry').addEventListener('change', function () {
      updateExpiryUi();
      if ($('tg-expiry').value === 'custom') { $('tg-expiry-date').focus(); }
    });
    $('tg-expiry-date').addEventListener('input', updateExpiryUi);
    $('tg-expiry-date').addEventListener('change', updateExpiryUi);
    $('tg-scope-mode-all').addEventListener('change', updateScopeUi);
    $('tg-scope-mode-some').addEventListener('change', updateScopeUi);
    $('tg-name').addEventListener('input', function () { $('tg-name').removeAttribute('aria-invalid'); });
    $('tg-tokens-body').addEventListener('click', onListClick);
    $('tg-audit-more').addEventListener('click', function () {
      loadAudit(true).catch(handleError);
    });
    $('tg-dialog-confirm').addEventListener('click', function () { $('tg-dialog').close('confirm'); });
    $('tg-dialog-cancel').addEventListener('click', function () { $('tg-dialog').close('cancel'); });
    $('tg-dialog').addEventListener('close', onDialogClose);
    // Leaving the page (or entering the back/forward cache) forgets a shown token.
    window.addEventListener('pagehide', function () { hideNewToken(false); });

    updateExpiryUi();
    updateScopeUi();

    refresh().catch(handleError).then(function () {
      $('tg-app').setAttribute('aria-busy', 'false');
      document.documentElement.setAttribute('data-tg-ready', 'true');
    });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
})();
