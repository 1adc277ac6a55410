"""Who is at this browser: a name the student picks and a secret token, kept in cookies so
they survive a reload and page switches; and the teacher's unlock.

The token is made here on a first visit and written into a cookie by a line of JavaScript
(st.html); a later session reads it back from st.context.cookies. The server only ever
compares hashes (fmnist_core.roles), and every permission is checked in the core: this file
only decides who is asking. The teacher's unlock is remembered as an HMAC of this browser's
token under the password, so a reload keeps it, a copied cookie on another browser does not,
and changing the password locks every teacher browser out.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import quote, unquote

import streamlit as st

from fmnist_core import roles

TOKEN_COOKIE, NAME_COOKIE, TEACHER_COOKIE = "fmnist_token", "fmnist_name", "fmnist_teacher"
MAX_AGE = 60 * 60 * 24 * 180  # half a year: one course


def _cookies() -> dict[str, str]:
    try:
        return dict(st.context.cookies)
    except Exception:  # no browser (AppTest): a fresh identity per session
        return {}


def _set_cookies(values: dict[str, str]) -> None:
    js = "".join(f"document.cookie = {json.dumps(f'{k}={quote(v)}; path=/; max-age={MAX_AGE}; SameSite=Lax')};"
                 for k, v in values.items())
    st.html(f"<script>{js}</script>", unsafe_allow_javascript=True)


def _teacher_proof(token: str) -> str | None:
    pw = roles.teacher_password()
    return hmac.new(pw.encode(), token.encode(), hashlib.sha256).hexdigest() if pw else None


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
    proof = _teacher_proof(token)
    st.session_state.me_teacher = bool(proof) and hmac.compare_digest(unquote(c.get(TEACHER_COOKIE, "")), proof)
    st.session_state.me_cookie_pending = {TOKEN_COOKIE: token} if fresh else {}


def current_user() -> roles.User:
    """This browser's user (the teacher on a laptop without a class password)."""
    _init()
    name = st.session_state.me_name or "anonymous"
    return roles.User(name, roles.user_id(st.session_state.me_token),
                      teacher=st.session_state.me_teacher or not roles.class_mode())


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
    if roles.check_teacher_password(given):
        st.session_state.me_teacher = True
        st.session_state.me_unlock_error = None
        st.session_state.me_cookie_pending[TEACHER_COOKIE] = _teacher_proof(st.session_state.me_token)
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
