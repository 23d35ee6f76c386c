"""The browser pages, in English and Simplified Chinese: the authorize page (the bind page of
an authorization: one or more channel id + password rows, the client, its redirect URI and the
scopes), the bind and revoke session pages, and a message page for the end of a flow or an
error that cannot go back to the client.

Plain HTML forms that work without JavaScript (fields ``channel_id`` and ``password``, buttons
``decision=approve|deny`` and ``add_row``); a small inline script only adds rows in place and
checks each row as it is filled in. No third-party assets. Every value is escaped; passwords
are never written back into a page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape
from urllib.parse import urlencode

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "authorize_title": "Authorize {client}",
        "authorize_intro": "{client} wants to use this pushgo gateway on your behalf. Bind one "
                           "or more channels by entering each channel's ID and password. The "
                           "passwords stay on this page: the app never sees them.",
        "client": "App",
        "redirect": "Returns to",
        "scopes": "It will be allowed to",
        "mcp:tools": "send messages, events and things to the channels you bind",
        "mcp:channels:manage": "list your bound channels and ask you to bind or unbind more",
        "channel_id": "Channel ID",
        "password": "Password",
        "add_row": "Add another channel",
        "approve": "Authorize",
        "deny": "Deny",
        "bind_title": "Bind a channel",
        "bind_intro": "{client} asks to send to one more channel. Enter its ID and password to "
                      "bind it.",
        "bind_submit": "Bind",
        "revoke_title": "Unbind a channel",
        "revoke_intro": "Enter the ID and password of the channel {client} should no longer "
                        "use.",
        "revoke_submit": "Unbind",
        "bound": "Channel {channel} is now bound. You can close this page and return to "
                 "your assistant.",
        "unbound": "Channel {channel} is no longer bound. You can close this page.",
        "not_bound": "Channel {channel} was not bound; nothing changed. You can close this page.",
        "expired": "This link has expired or was already used. Ask your assistant for a new one.",
        "error_title": "Cannot continue",
        "done_title": "Done",
        "wrong": "Wrong channel ID or password.",
        "incomplete": "Enter both the channel ID and the password.",
        "none": "Enter at least one channel.",
        "bad_id": "This is not a valid channel ID.",
        "too_many": "Too many attempts. Try again in {seconds} seconds.",
        "checking": "Checking…",
        "ok": "OK: {name}",
        "network": "Could not check right now.",
        "csrf": "This form has expired or was not opened in this browser. Go back to your app "
                "and start again.",
        "unknown_client": "The app that sent you here is not registered with this gateway.",
        "bad_redirect": "The app asked to return to an address it has not registered, so this "
                        "gateway will not send you there.",
        "bad_request": "The app sent a request this gateway cannot accept ({error}: "
                       "{description}). Go back to the app and try again.",
        "bind_scopes": "With this channel, {client} will be allowed to",
        "revoke_scopes": "For this channel, {client} will no longer be allowed to",
        "language": "Language",
        "busy": "Too many pages were opened from your address. Try again in a minute.",
    },
    "zh-CN": {
        "authorize_title": "授权 {client}",
        "authorize_intro": "{client} 请求代表你使用此 pushgo 网关。输入一个或多个频道的频道 ID "
                           "和密码来绑定频道。密码只在此页面使用，该应用不会看到。",
        "client": "应用",
        "redirect": "完成后返回",
        "scopes": "它将被允许",
        "mcp:tools": "向你绑定的频道发送消息、事件和事物",
        "mcp:channels:manage": "列出已绑定的频道，并请求你绑定或解绑更多频道",
        "channel_id": "频道 ID",
        "password": "密码",
        "add_row": "再添加一个频道",
        "approve": "授权",
        "deny": "拒绝",
        "bind_title": "绑定频道",
        "bind_intro": "{client} 请求再使用一个频道。输入该频道的 ID 和密码来绑定。",
        "bind_submit": "绑定",
        "revoke_title": "解绑频道",
        "revoke_intro": "输入不再允许 {client} 使用的频道的 ID 和密码。",
        "revoke_submit": "解绑",
        "bound": "频道 {channel} 已绑定。你可以关闭此页面并回到助手。",
        "unbound": "频道 {channel} 已解绑。你可以关闭此页面。",
        "not_bound": "频道 {channel} 原本未绑定，没有任何变化。你可以关闭此页面。",
        "expired": "此链接已过期或已被使用。请让助手重新生成一个。",
        "error_title": "无法继续",
        "done_title": "完成",
        "wrong": "频道 ID 或密码错误。",
        "incomplete": "请同时填写频道 ID 和密码。",
        "none": "请至少填写一个频道。",
        "bad_id": "这不是有效的频道 ID。",
        "too_many": "尝试次数过多，请 {seconds} 秒后再试。",
        "checking": "正在验证…",
        "ok": "验证通过：{name}",
        "network": "暂时无法验证。",
        "csrf": "此表单已过期，或不是在此浏览器中打开的。请回到应用重新开始。",
        "unknown_client": "将你引导到这里的应用未在此网关注册。",
        "bad_redirect": "该应用请求返回一个未登记的地址，因此网关不会把你带到那里。",
        "bad_request": "该应用发来的请求无法被此网关接受（{error}：{description}）。"
                       "请回到应用重试。",
        "bind_scopes": "绑定此频道后，{client} 将被允许",
        "revoke_scopes": "解绑此频道后，{client} 将不再被允许",
        "language": "语言",
        "busy": "从你的地址打开的页面过多，请一分钟后再试。",
    },
}


def t(locale: str, key: str, **values: str) -> str:
    text = TEXT.get(locale, TEXT["en"]).get(key) or TEXT["en"][key]
    return text.format(**values) if values else text


@dataclass
class Row:
    channel_id: str = ""
    error: str | None = None


@dataclass
class Form:
    """One rendering of a page with a form."""

    locale: str
    action: str
    request_id: str
    csrf_token: str
    rows: list[Row] = field(default_factory=lambda: [Row()])
    error: str | None = None
    multi: bool = True
    #: Other-language links: (label, href).
    languages: list[tuple[str, str]] = field(default_factory=list)


_STYLE = """
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI","Noto Sans","PingFang SC",
"Microsoft YaHei",sans-serif;color:#17212b;background:#f3f6f9;padding:24px}
main{max-width:40rem;margin:0 auto;background:#fff;border:1px solid #d8e0e8;border-radius:12px;
padding:24px}
h1{font-size:22px;margin:0 0 8px}
p{margin:8px 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 12px;margin:16px 0}
dt{color:#5b6b7a}dd{margin:0;word-break:break-all}
ul{margin:4px 0 16px;padding-left:20px}
fieldset{border:0;padding:0;margin:0}
.row{display:grid;grid-template-columns:1fr 1fr;gap:8px 12px;margin:0 0 12px;padding:12px;
border:1px solid #e3e9ef;border-radius:8px}
label{display:block;font-size:13px;color:#5b6b7a}
input{width:100%;font:inherit;padding:8px 10px;border:1px solid #c9d3dd;border-radius:6px;
margin-top:4px}
.check{grid-column:1/-1;font-size:13px;min-height:1em;margin:0}
.error{color:#b42318}.ok{color:#16794c}
.actions{display:flex;flex-wrap:wrap;gap:8px;margin-top:16px}
button{font:inherit;padding:8px 16px;border-radius:6px;border:1px solid #c9d3dd;background:#fff;
cursor:pointer}
button.primary{background:#0b6e8a;border-color:#0b6e8a;color:#fff}
.lang{font-size:13px;color:#5b6b7a;margin-top:16px}
.lang a{color:#0b6e8a;margin-right:8px}
"""

_SCRIPT = """
(function(){
var form=document.querySelector("form[data-live]");if(!form)return;
var text=JSON.parse(document.getElementById("texts").textContent);
var rows=document.getElementById("rows");
function check(row){
  var id=row.querySelector("input[name=channel_id]").value.trim();
  var pw=row.querySelector("input[name=password]").value;
  var out=row.querySelector(".check");
  if(!id||!pw){return;}
  out.className="check";out.textContent=text.checking;
  fetch("/oauth/channel/validate",{method:"POST",credentials:"same-origin",
    headers:{"Content-Type":"application/json"},
    body:JSON.stringify({request_id:form.elements["request_id"].value,
      csrf_token:form.elements["csrf_token"].value,channel_id:id,password:pw,
      lang:form.elements["lang"].value})})
  .then(function(r){return r.json();})
  .then(function(d){
    if(d.valid){out.className="check ok";out.textContent=text.ok.replace("{name}",
      d.channel_name||id);}
    else{out.className="check error";out.textContent=d.message||text.wrong;}
  }).catch(function(){out.className="check error";out.textContent=text.network;});
}
function wire(row){
  row.querySelectorAll("input").forEach(function(input){
    input.addEventListener("change",function(){check(row);});
  });
}
rows.querySelectorAll(".row").forEach(wire);
var add=document.getElementById("add-row");
if(add){add.addEventListener("click",function(ev){
  ev.preventDefault();
  var last=rows.querySelector(".row:last-of-type");var row=last.cloneNode(true);
  row.querySelectorAll("input").forEach(function(i){i.value="";});
  var out=row.querySelector(".check");out.className="check";out.textContent="";
  rows.appendChild(row);wire(row);row.querySelector("input").focus();
});}
})();
"""


def _document(locale: str, title: str, body: str, nonce: str, *, script: bool = False) -> str:
    js = f'<script nonce="{nonce}">{_SCRIPT}</script>' if script else ""
    return (f'<!doctype html>\n<html lang="{escape(locale)}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<meta name="referrer" content="no-referrer">'
            f"<title>{escape(title)}</title><style nonce=\"{nonce}\">{_STYLE}</style></head>"
            f"<body><main>{body}</main>{js}</body></html>\n")


def _rows(form: Form) -> str:
    out = []
    for i, row in enumerate(form.rows):
        err = (f'<p class="check error" role="alert" id="row-error-{i}">{escape(row.error)}</p>'
               if row.error else '<p class="check" aria-live="polite"></p>')
        out.append(
            '<div class="row">'
            f'<label>{escape(t(form.locale, "channel_id"))}'
            f'<input name="channel_id" value="{escape(row.channel_id)}" autocomplete="off" '
            'spellcheck="false" autocapitalize="characters" maxlength="64"></label>'
            f'<label>{escape(t(form.locale, "password"))}'
            '<input type="password" name="password" autocomplete="current-password" '
            'maxlength="256"></label>'
            f"{err}</div>")
    return "".join(out)


def _hidden(form: Form) -> str:
    return (f'<input type="hidden" name="request_id" value="{escape(form.request_id)}">'
            f'<input type="hidden" name="csrf_token" value="{escape(form.csrf_token)}">'
            f'<input type="hidden" name="lang" value="{escape(form.locale)}">')


def _texts(locale: str) -> str:
    doc = {k: t(locale, k) for k in ("checking", "ok", "network", "wrong")}
    # JSON inside <script type="application/json">: "</" must not end the element.
    return json.dumps(doc, ensure_ascii=False).replace("</", "<\\/")


def _languages(form: Form) -> str:
    if not form.languages:
        return ""
    links = "".join(f'<a href="{escape(href)}">{escape(label)}</a>'
                    for label, href in form.languages)
    return f'<p class="lang">{escape(t(form.locale, "language"))}: {links}</p>'


def language_links(path: str, params: dict[str, str], current: str) -> list[tuple[str, str]]:
    names = {"en": "English", "zh-CN": "简体中文"}
    return [(names[code], f"{path}?{urlencode({**params, 'lang': code})}")
            for code in names if code != current]


def authorize_page(form: Form, *, client_name: str, client_id: str, redirect_uri: str,
                   scopes: list[str], nonce: str) -> str:
    loc = form.locale
    title = t(loc, "authorize_title", client=client_name)
    summary = f'<p class="error" role="alert">{escape(form.error)}</p>' if form.error else ""
    body = (
        f"<h1>{escape(title)}</h1>"
        f"<p>{escape(t(loc, 'authorize_intro', client=client_name))}</p>"
        f"<dl><dt>{escape(t(loc, 'client'))}</dt><dd>{escape(client_name)}"
        + (f" (<code>{escape(client_id)}</code>)" if client_id != client_name else "")
        + f"</dd><dt>{escape(t(loc, 'redirect'))}</dt><dd><code>{escape(redirect_uri)}</code>"
        "</dd></dl>"
        f"<p>{escape(t(loc, 'scopes'))}:</p>{_scope_list(loc, scopes)}"
        f'<form method="post" action="{escape(form.action)}" data-live>{_hidden(form)}'
        f'{summary}<fieldset id="rows">{_rows(form)}</fieldset>'
        '<div class="actions">'
        f'<button class="primary" type="submit" name="decision" value="approve">'
        f"{escape(t(loc, 'approve'))}</button>"
        f'<button type="submit" name="decision" value="deny" formnovalidate>'
        f"{escape(t(loc, 'deny'))}</button>"
        f'<button type="submit" name="add_row" value="1" id="add-row" formnovalidate>'
        f"{escape(t(loc, 'add_row'))}</button></div></form>"
        f'<script type="application/json" id="texts">{_texts(loc)}</script>'
        + _languages(form))
    return _document(loc, title, body, nonce, script=True)


def _scope_list(locale: str, scopes: list[str]) -> str:
    items = "".join(f"<li>{escape(t(locale, s))} <code>{escape(s)}</code></li>" for s in scopes)
    return f'<ul id="scopes">{items}</ul>'


def bind_page(form: Form, *, action: str, client_name: str, scopes: list[str],
              nonce: str) -> str:
    """The page a ``bind_url`` opens: the channel id + password and the scopes the grant
    holds, which the channel is bound to (or taken out of)."""
    loc = form.locale
    title = t(loc, f"{action}_title")
    summary = f'<p class="error" role="alert">{escape(form.error)}</p>' if form.error else ""
    body = (
        f"<h1>{escape(title)}</h1>"
        f"<p>{escape(t(loc, f'{action}_intro', client=client_name))}</p>"
        f"<p>{escape(t(loc, f'{action}_scopes', client=client_name))}:</p>"
        f"{_scope_list(loc, scopes)}"
        f'<form method="post" action="{escape(form.action)}" data-live>{_hidden(form)}'
        f'{summary}<fieldset id="rows">{_rows(form)}</fieldset>'
        '<div class="actions">'
        f'<button class="primary" type="submit" name="decision" value="approve">'
        f"{escape(t(loc, f'{action}_submit'))}</button></div></form>"
        f'<script type="application/json" id="texts">{_texts(loc)}</script>'
        + _languages(form))
    return _document(loc, title, body, nonce, script=True)


def message_page(locale: str, title_key: str, message: str, nonce: str) -> str:
    title = t(locale, title_key)
    body = f'<h1>{escape(title)}</h1><p role="status" id="message">{escape(message)}</p>'
    return _document(locale, title, body, nonce)
