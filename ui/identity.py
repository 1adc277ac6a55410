"""Who is at this browser: a name the student picks and a secret token, kept in cookies so
they survive a reload and page switches; and the teacher's unlock.

The token is made here on a first visit and written into a cookie by a line of JavaScript
(st.html); a later session reads it back from st.context.cookies. The server only ever
compares hashes (fmnist_core.roles), and every permission is checked in the core: this file
only decides who is asking. The teacher's unlock is remembered as an HMAC of this browser's
token and an expiry under the password (roles.teacher_proof), so a reload keeps it for a school
day, a copied cookie on another browser does not, and changing the password locks every
teacher browser out. Unlock tries are rate-limited per browser and per client address
(roles.try_teacher_password). Cookies are marked Secure when the page came over https.
"""
from __future__ import annotations

import json
from urllib.parse import quote, unquote

import streamlit as st

from fmnist_core import roles

TOKEN_COOKIE, NAME_COOKIE, TEACHER_COOKIE = "fmnist_token", "fmnist_name", "fmnist_teacher"
MAX_AGE = 60 * 60 * 24 * 180  # half a year: one course (the name and token; not the teacher's proof)


def _cookies() -> dict[str, str]:
    try:
        return dict(st.context.cookies)
    except Exception:  # no browser (AppTest): a fresh identity per session
        return {}


def _client_address() -> str:
    try:
        return roles.address_id(st.context.ip_address)
    except Exception:  # no browser (AppTest)
        return ""


def _set_cookies(values: dict[str, str]) -> None:
    def cookie(k: str, v: str) -> str:
        age = roles.TEACHER_PROOF_SECONDS if k == TEACHER_COOKIE else MAX_AGE
        return f"{k}={quote(v)}; path=/; max-age={age}; SameSite=Lax"
    # Secure where the page came over https (a class server), so the cookies never travel in
    # clear; a laptop's http://localhost would drop a Secure cookie, so not there
    js = "".join(f"document.cookie = {json.dumps(cookie(k, v))} + secure;" for k, v in values.items())
    st.html(f"<script>const secure = location.protocol === 'https:' ? '; Secure' : '';{js}</script>",
            unsafe_allow_javascript=True)


def _init() -> None:
    if "me_token" in st.session_state:
        return
    c = _cookies()
    token = unquote(c.get(TOKEN_COOKIE, ""))
    fresh = len(token) != 32
    if fresh:
        token = roles.new_token()
    st.session_state.me_token = token
    try:
        st.session_state.me_name = roles.clean_name(unquote(c.get(NAME_COOKIE, "")))
    except Exception:
        st.session_state.me_name = "" if roles.class_mode() else roles.single_user().name
    st.session_state.me_teacher = roles.check_teacher_proof(token, unquote(c.get(TEACHER_COOKIE, "")))
    st.session_state.me_cookie_pending = {TOKEN_COOKIE: token} if fresh else {}


def current_user() -> roles.User:
    """This browser's user (the teacher on a laptop without a class password)."""
    _init()
    name = st.session_state.me_name or "anonymous"
    return roles.User(name, roles.user_id(st.session_state.me_token),
                      teacher=st.session_state.me_teacher or not roles.class_mode(),
                      address=_client_address())


def has_name() -> bool:
    _init()
    return bool(st.session_state.me_name) or not roles.class_mode()


def _save_name() -> None:
    try:
        st.session_state.me_name = roles.clean_name(st.session_state.me_name_input)
        st.session_state.me_name_error = None
        st.session_state.me_cookie_pending[NAME_COOKIE] = st.session_state.me_name
    except Exception as exc:
        st.session_state.me_name_error = str(exc)


def _unlock() -> None:
    given = st.session_state.get("me_password", "")
    st.session_state.me_password = ""  # never kept in the session
    try:
        ok = roles.try_teacher_password(given, roles.user_id(st.session_state.me_token), _client_address())
    except roles.RateLimited as exc:
        st.session_state.me_unlock_error = str(exc)
        return
    if ok:
        st.session_state.me_teacher = True
        st.session_state.me_unlock_error = None
        st.session_state.me_cookie_pending[TEACHER_COOKIE] = roles.teacher_proof(st.session_state.me_token)
    else:
        st.session_state.me_unlock_error = "That is not the teacher's password."


def _lock() -> None:
    st.session_state.me_teacher = False
    st.session_state.me_cookie_pending[TEACHER_COOKIE] = ""


def sidebar_panel() -> None:
    """'You': the name (class mode), teacher unlock/lock; writes pending cookies."""
    _init()
    if roles.class_mode():
        st.markdown("#### You")
        if "me_name_input" not in st.session_state:
            st.session_state.me_name_input = st.session_state.me_name
        st.text_input("Your name", key="me_name_input", on_change=_save_name, max_chars=40,
                      placeholder="e.g. Ada L.", help="Shown on your runs and the leaderboard")
        if st.session_state.get("me_name_error"):
            st.error(st.session_state.me_name_error)
        if st.session_state.me_teacher:
            st.caption(":material/school: **teacher mode**: you can stop or delete any run and set "
                       "the class limits below")
            st.button("Leave teacher mode", key="me_lock", on_click=_lock)
        else:
            with st.expander("Teacher"):
                st.text_input("Teacher password", type="password", key="me_password", on_change=_unlock)
                if st.session_state.get("me_unlock_error"):
                    st.error(st.session_state.me_unlock_error)
    if st.session_state.me_cookie_pending:
        _set_cookies(st.session_state.me_cookie_pending)
        st.session_state.me_cookie_pending = {}
