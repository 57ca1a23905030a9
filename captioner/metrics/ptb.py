"""A pure-Python port of the Stanford PTB tokenizer that pycocoevalcap runs, for scoring captions without Java.

pycocoevalcap tokenizes captions with Stanford PTBTokenizer (Java), then removes punctuation.
The port gives the same tokens on caption text; :func:`tokenize_captions` runs either one.

The port follows the lexer in ``stanford-corenlp-3.4.1.jar`` (the jar pycocoevalcap ships) as it runs
with ``-preserveLines -lowerCase``: the captions are lexed as one text, one caption a line, because
a few rules look ahead past the end of a line (``letter s.`` before a line starting ``The``).
"""

from __future__ import annotations

import itertools
import re
import shutil
import unicodedata
from functools import lru_cache
from typing import Mapping, Sequence


def _class(pred) -> str:
    """Regex class body of the BMP characters satisfying ``pred``, as ranges."""
    spans, start, prev = [], None, None
    for cp in range(0x10000):
        if 0xD800 <= cp <= 0xDFFF or not pred(chr(cp)):
            continue
        if start is None or cp != prev + 1:
            if start is not None:
                spans.append((start, prev))
            start = cp
        prev = cp
    spans.append((start, prev))
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in spans)


_EXTRA_LETTERS = (
    "\u00ad\u0237-\u024f\u02c2-\u02c5\u02d2-\u02df\u02e5-\u02ff\u0300-\u036f\u0370-\u037d\u0384\u0385"
    "\u03cf\u03f6\u03fc-\u03ff\u0483-\u0487\u04cf\u04f6-\u04ff\u0510-\u0525\u055a-\u055f\u0591-\u05bd"
    "\u05bf\u05c1\u05c2\u05c4\u05c5\u05c7\u0615-\u061a\u063b-\u063f\u064b-\u065e\u0670\u06d6-\u06ef"
    "\u06fa-\u06ff\u070f\u0711\u0730-\u074f\u0750-\u077f\u07a6-\u07b1\u07ca-\u07f5\u07fa\u0900-\u0903"
    "\u093c\u093e-\u094e\u0951-\u0955\u0962-\u0963\u0981-\u0983\u09bc-\u09c4\u09c7\u09c8\u09cb-\u09cd"
    "\u09d7\u09e2\u09e3\u0a01-\u0a03\u0a3c\u0a3e-\u0a4f\u0a81-\u0a83\u0abc-\u0acf\u0b82\u0bbe-\u0bc2"
    "\u0bc6-\u0bc8\u0bca-\u0bcd\u0c01-\u0c03\u0c3e-\u0c56\u0d3e-\u0d44\u0d46-\u0d48\u0e30-\u0e3a"
    "\u0e47-\u0e4e\u0eb1-\u0ebc\u0ec8-\u0ecd"
)
_MISC_SYMBOLS = (
    "+%&~^|\\\\\u00a6\u00a7\u00a8\u00a9\u00ac\u00ae\u00af\u00b0-\u00ba\u00d7\u00f7\u0387\u05be\u05c0\u05c3"
    "\u05c6\u05f3\u05f4\u0600-\u0603\u0606-\u060a\u060c\u0614\u061b\u061e\u066a\u066d\u0703-\u070d"
    "\u07f6-\u07f8\u0964\u0965\u0e4f\u1fbd\u2016\u2017\u2020-\u2023\u2030-\u2038\u203b\u203e-\u2042"
    "\u2044\u207a-\u207f\u208a-\u208e\u2100-\u214f\u2190-\u21ff\u2200-\u2bff\u3012\u30fb\uff01-\uff0f"
    "\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65"
)
_SENTENCE_STARTS = (
    "About According Additionally After An A As At But Earlier He Her Here However If In It Last Many More Mr\\. "
    "Ms\\. Now Once One Other Our She Since So Some Such That The Their Then There These They This We When While "
    "What Yet You"
)


def _macros() -> dict[str, str]:
    """The lexer's named patterns (JFlex macros), each expanded in terms of the ones before it."""
    cat = unicodedata.category
    raw = {"L": _class(lambda c: cat(c)[0] == "L"), "D": _class(lambda c: cat(c) == "Nd"), "UPPER": _class(str.isupper)}
    defs = [
        ("LETTER", "(?:[{L}" + _EXTRA_LETTERS + "]|&[aeiouAEIOU](?i:acute|grave|uml);)"),
        ("LD", "[{L}{D}]"),
        ("DIGIT", "[{D}]"),
        ("SPACE", "[ \t\u00a0\u2000-\u200a\u3000]"),
        ("NL", "(?:\r\n|[\r\n\u2028\u2029\u000b\u000c])"),
        ("SPACENL", "(?:{SPACE}|{NL})"),
        ("SGMLNAME", "[A-Za-z][A-Za-z0-9_:.-]*"),
        (
            "SGML",
            "<(?:[!?][A-Za-z-][^>\r\n]*|{SGMLNAME}(?: +(?:{SGMLNAME} *= *(?:'[^'\r\n]*'|\"[^\"\r\n]*\"|{SGMLNAME})|{SGMLNAME}))* */?|/{SGMLNAME}) *>",
        ),
        ("SENTEND", "{SPACENL}(?:{SPACENL}|[{UPPER}]|{SGML})"),
        ("APOS", "(?:['\u0092\u2019]|&(?i:apos);)"),
        ("APOSETC", "(?:{APOS}|[`\u0091\u2018\u201b])"),
        ("WORD", "{LETTER}(?:{LETTER}|{DIGIT})*(?:[.!?]{LETTER}(?:{LETTER}|{DIGIT})*)*"),
        ("REDAUX", "{APOS}(?:[msdMSD]|(?i:re|ve|ll))"),
        ("SWORD", "[A-Za-z\u00ad]*[A-MO-Za-mo-z]\u00ad*"),
        ("SREDAUX", "(?i:n){APOSETC}(?i:t)"),
        ("NUM", "(?:{DIGIT}*(?:[.:,\u00ad\u066b\u066c]{DIGIT}+)+|{DIGIT}+)"),
        ("HYPHEN", "[-_\u058a\u2010\u2011]"),
        (
            "ACRO",
            r"(?:[A-Za-z](?:\.[A-Za-z])*|(?i:canada|sino|korean|eu|japan|non)-(?i:U\.S)|(?i:U\.S\.-)(?i:U\.K|U\.S\.S\.R))",
        ),
        (
            "ACRO2",
            r"(?:[A-Za-z](?:\.[A-Za-z])+|(?i:canada|sino|korean|eu|japan|non)-(?i:U\.S)|(?i:U\.S\.-)(?i:U\.K|U\.S\.S\.R))",
        ),
        (
            "ABTITLE",
            r"(?:(?i:mrs|mr|ms|drs|dr|profs|prof|sens|sen|reps|rep|attys|atty|lt|col|gen|messrs|govs|gov|adm|rev|maj|sgt|cpl|pvt|capt|ste|st|ave|pres|lieut|hon|brig|comdr|cmdr|pfc|spc|supts|supt|det|mt|ft|mmes|mme|mm|mlles|mlle|m)|M(?i:iss))",
        ),
        (
            "ABSTATE",
            r"(?:(?i:ala|ariz|calif|colo|conn|ct|dak|fla|ga|ind|kans|kan|ky|md|mich|minn|mo|mont|neb|nev|okla|pa|penn|tenn|tex|va|vt|wis|wyo)|A(?i:rk)|D(?i:el)|I(?i:ll)|L(?i:a)|M(?i:ass|iss)|O(?i:re)|W(?i:ash))",
        ),
        (
            "ABBREV1",
            r"(?:(?i:sept|sep|jan|feb|mar|apr|jun|jul|aug|oct|nov|dec|mon|tues|tue|wed|thurs|thu|fri|inc|cos|co|corp|ppty|ppte|ppts|pty|pte|ptys|ptes|ltd|plc|rt|bancorp|dept|bhd|assn|univ|intl|sys|jr|sr|bros|ed\.d|ph\.d|blvd|rd|esq|etc|al|seq)\.)",
        ),
        ("ABBREV4", r"(?:{ACRO}|{ABTITLE}|(?i:vs|alex|wm|jos|cie|a\.k\.a|cf|treas|ph|tel|est|ext|sq)|{ABSTATE})"),
        ("HTHING", r"[A-Za-z0-9][A-Za-z0-9.,\u00AD]*(?:-(?:[A-Za-z0-9\u00AD]+|{ACRO2}\.))+"),
        ("QUOTES", "(?:[`\u2018-\u201f\u0082\u0084\u0091-\u0094\u2039\u203a\u00ab\u00bb]{1,2}|''|{APOS})"),
        ("NOTURL", ' \t\n\f\r"<>|'),
    ]
    out = dict(raw)
    for name, body in defs:
        out[name] = re.sub(r"\{([A-Z0-9]+)\}", lambda m: out[m.group(1)] if m.group(1) in out else m.group(0), body)
    return out


# Token actions: each takes the matched token text and returns (tokens, characters consumed).
def _keep(t):
    return [t], len(t)


def _word(t):
    """Words, numbers and hyphenated things lose soft hyphens."""
    return [t.replace("\u00ad", "")], len(t)


def _const(out):
    return lambda t: ([out], len(t))


def _skip(t):
    return [], len(t)


def _nbsp(t):
    return [t.replace(" ", "\u00a0")], len(t)


def _pushback(n):
    return lambda t: ([t[:-n]], len(t) - n)


def _period_again(t):
    """Abbreviation before a sentence end: the token keeps its period, which is also returned again."""
    return [t], len(t) - 1


def _acronym(t):
    return ([t[0]], 1) if len(t) == 2 else ([t], len(t) - 1)


_LEFT_SINGLE = re.compile("[\u0082\u008b\u0091\u2018\u201b\u2039]")
_RIGHT_SINGLE = re.compile("[\u0092\u009b\u00b4\u2019\u203a]")
_LEFT_DOUBLE = re.compile("[\u0084\u0093\u201c\u00ab]|[\u0091\u2018]'")
_RIGHT_DOUBLE = re.compile("[\u0094\u201d\u00bb]|[\u0092\u2019]'")


def _quotes(left):
    single, double = ("`", "``") if left else ("'", "''")

    def action(t):
        s = re.sub("&apos;|'", single, t)
        s = re.sub('"|&quot;', double, s)
        s = _LEFT_SINGLE.sub("`", s)
        s = _RIGHT_SINGLE.sub("'", s)
        s = _LEFT_DOUBLE.sub("``", s)
        s = _RIGHT_DOUBLE.sub("''", s)
        return [s], len(t)

    return action


def _amp(t):
    return [t.replace("&amp;", "&")], len(t)


def _fraction(t):
    return [{"\u00bc": "1/4", "\u00bd": "1/2", "\u00be": "3/4", "\u2153": "1/3", "\u2154": "2/3"}.get(t, t)], len(t)


def _currency(t):
    return [{"\u00a2": "cents", "\u00a3": "#", "\u0080": "$", "\u20ac": "$"}.get(t, t)], len(t)


def _dashes(t):
    return ["--" if 3 <= len(t) <= 4 else t], len(t)


def _phone(t):
    return [t.replace(" ", "\u00a0").replace("(", "-LRB-").replace(")", "-RRB-")], len(t)


def _smiley(t):
    return [t.replace("(", "-LRB-").replace(")", "-RRB-")], len(t)


_NEWLINE = "\n"


def _newline(t):
    return [_NEWLINE], len(t)


def _rules(m):
    """(first-character class, pattern, trailing context, action), in the lexer's priority order.

    The first-character class (None: any) only narrows which rules are tried at a position. As in
    JFlex, the longest match wins, trailing context included, and ties go to the earlier rule. The
    Java lexer is %caseless: literal text matches either case, character classes do not.
    """
    sent_starts = "|".join(f"{w[0]}(?i:{w[1:]})" if len(w) > 1 else w for w in _SENTENCE_STARTS.split())
    return [
        ("<", m["SGML"], None, _nbsp),
        (
            "&\u0096\u0097\u2013\u2014\u2015",
            "&(?i:md|mdash|ndash);|[\u0096\u0097\u2013\u2014\u2015]",
            None,
            _const("--"),
        ),
        ("&", "&(?i:amp);", None, _const("&")),
        ("&", "&(?:(?i:ht|tl|ur|lr|qc|ql|qr|odq|cdq)|#[0-9]+);", None, _keep),
        ("cC", "(?i:cannot)", None, _pushback(3)),
        ("gwlGWL", "(?i:gonna|gotta|lemme|gimme|wanna)", None, _pushback(2)),
        ("'", "'(?i:tis)", None, _pushback(2)),
        ("'", "'(?i:twas)", None, _pushback(3)),
        (None, m["WORD"], m["REDAUX"], _word),
        ("A-Za-z\u00ad", m["SWORD"], m["SREDAUX"], _word),
        (None, m["WORD"], None, _word),
        (
            None,
            "|".join(
                [
                    "{APOS}(?i:n){APOS}?",
                    "[lLdDjJ]{APOS}",
                    "(?i:dunkin|somethin|ol){APOS}",
                    "{APOS}(?i:em)",
                    "[A-HJ-XZn]{APOSETC}[{L}]{2}[{L}]*",
                    "{APOS}[2-9]0(?i:s)",
                    "{APOS}(?i:till|til)",
                    "[{L}][{L}]*[aeiouyAEIOUY]{APOSETC}[aeiouA-Z][{L}]*",
                    "{APOS}(?i:cause)",
                    "(?i:cont'd\\.?)",
                    "(?i:'twas|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l)",
                    "O{APOSETC}(?i:o)",
                ]
            ),
            None,
            _keep,
        ),
        ("yY", "(?i:y){APOS}", "[{L}]", _keep),
        ("hH", r"(?i:https?)://[^{NOTURL}()]+[^{NOTURL}.!?(){},-]", None, _keep),
        (
            None,
            r"(?:(?i:www)\.(?:[^{NOTURL}.!?(){},]+\.)+[a-zA-Z]{2,4}|(?:[^{NOTURL}`'.!?(){},-_$]+\.)+(?i:com|net|org|edu))"
            r"(?:/[^{NOTURL}()]+[^{NOTURL}.!?(){},-])?",
            None,
            _keep,
        ),
        (
            "a-zA-Z0-9",
            '[a-zA-Z0-9][^ \t\n\f\r"<>|(){}\u00a0]*@(?:[^ \t\n\f\r"<>|(){}.\u00a0]+\\.)*[^ \t\n\f\r"<>|(){}.\u00a0]+',
            None,
            _keep,
        ),
        ("cCfF", "(?i:c\\+\\+|[cf]#)", None, _keep),
        ("@#", "@[a-zA-Z_][a-zA-Z_0-9]*|#{LETTER}+", None, _keep),
        (None, m["REDAUX"], "[^A-Za-z]", _quotes(False)),
        ("nN", m["SREDAUX"], "[^A-Za-z]", _quotes(False)),
        (None, "{DIGIT}{1,2}[-/]{DIGIT}{1,2}[-/]{DIGIT}{2,4}", None, _keep),
        (None, "[-+]?{NUM}", None, _word),
        (
            "\u207a\u207b\u208a\u208b\u2070\u00b9\u00b2\u00b3\u2074-\u2079\u2080-\u2089",
            "[\u207a\u207b\u208a\u208b]?(?:[\u2070\u00b9\u00b2\u00b3\u2074-\u2079]+|[\u2080-\u2089]+)",
            None,
            _keep,
        ),
        (None, "(?:{DIGIT}{1,4}[- \u00a0])?{DIGIT}{1,4}(?:\\\\?/|\u2044){DIGIT}{1,4}", None, _nbsp),
        ("\u00bc\u00bd\u00be\u2153-\u215e", "[\u00bc\u00bd\u00be\u2153-\u215e]", None, _fraction),
        (
            "-CcSspPaA",
            r"-(?i:RRB|LRB|RCB|LCB|RSB|LSB)-|(?i:C\.D\.s|pro-|anti-|S(?:&|&amp;)P-500|S(?:&|&amp;)Ls|"
            r"Cap{APOS}n|c{APOS}est)",
            None,
            _amp,
        ),
        ("A-Za-z0-9", r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}", None, _keep),
        ("A-Z$#", "[A-Z]*\\$|#", None, _keep),
        (
            "\u00a2-\u00a5\u0080\u20a0\u20ac\u060b\u0e3f\u20a4\uffe0\uffe1\uffe5\uffe6",
            "[\u00a2-\u00a5\u0080\u20a0\u20ac\u060b\u0e3f\u20a4\uffe0\uffe1\uffe5\uffe6]",
            None,
            _currency,
        ),
        ("A-Za-z", "{ACRO}\\.", "{SPACENL}+(?:" + sent_starts + "){SPACENL}", _acronym),
        ("A-Za-z", "(?i:ca|figs|fig|prop|nos|no|art|bldg|pp|op)\\.", "{SPACENL}*{DIGIT}", _keep),
        ("A-Za-z", m["ABBREV1"], m["SENTEND"], _period_again),
        ("A-Za-z", m["ABBREV1"], "(?s:..)", _keep),
        ("A-Za-z", m["ABBREV1"], None, _period_again),
        ("A-Za-z", "{ABBREV4}\\.", None, _keep),
        ("A-Za-z", m["ABBREV4"], "{SPACE}", _keep),
        ("A-Za-z", "{ACRO}\\.", "{SPACENL}", _keep),
        (None, "{APOS}[0-9][0-9]", "{SPACENL}", _keep),
        (None, "(?:" + m["WORD"] + "|{LD}+)\\.", "[,;:\u3001]", _keep),
        (
            "(+0-9",
            r"(?:\([0-9]{2,3}\)[ \u00A0]?|(?:\+\+?)?(?:[0-9]{2,4}[- \u00A0])?[0-9]{2,4}[- \u00A0])[0-9]{3,4}[- \u00A0]?[0-9]{3,5}"
            r"|(?:(?:\+\+?)?[0-9]{2,4}\.)?[0-9]{2,4}\.[0-9]{3,4}\.[0-9]{3,5}",
            None,
            _phone,
        ),
        ('"&', '"|&(?i:quot);', "[A-Za-z0-9$]", _quotes(True)),
        ('"&', '"|&(?i:quot);', None, _quotes(False)),
        ("\x7f", "\x7f", None, _skip),
        ("<&", "<|&(?i:lt);", None, _const("<")),
        (">&", ">|&(?i:gt);", None, _const(">")),
        ("<>:;=", "[<>]?[:;=][-o*']?[()DPdpO\\\\{@|\\[\\]]", "[^A-Za-z0-9]|\\Z", _smiley),
        ("x^=~<>\\-", "[\\^x=~<>\\-]_+[\\^x=~<>\\-]", None, _keep),
        ("{", "\\{", None, _const("-LCB-")),
        ("}", "\\}", None, _const("-RCB-")),
        ("[", "\\[", None, _const("-LSB-")),
        ("]", "\\]", None, _const("-RSB-")),
        ("(", "\\(", None, _const("-LRB-")),
        (")", "\\)", None, _const("-RRB-")),
        ("-", "-+", None, _dashes),
        (".\u0085\u2026", "\\.{3,5}|(?:\\.[ \u00a0]){2,4}\\.|[\u0085\u2026]", None, _const("...")),
        ("@#_", "@+|#+|_+", None, _keep),
        ("*\\\\", r"\*+|(?:\\\*){1,3}", None, _keep),
        (",;:\u3001", "[,;:\u3001]", None, _keep),
        ("?!", "[?!]+", None, _keep),
        (
            ".\u00a1\u00bf\u037e\u0589\u061f\u06d4\u0700-\u0702\u07fa\u3002",
            "[.\u00a1\u00bf\u037e\u0589\u061f\u06d4\u0700-\u0702\u07fa\u3002]",
            None,
            _keep,
        ),
        ("=", "=", None, _keep),
        ("/", "/", None, _keep),
        ("A-Za-z0-9", m["HTHING"], None, _word),
        ("A-Z", "[A-Z]+(?:(?:[+&]|&(?i:amp);)[A-Z]+)+", None, _amp),
        (None, "(?:[dDoOlL]{APOSETC}{LD})?{LD}+(?:{HYPHEN}(?:[dDoOlL]{APOSETC}{LD})?{LD}+)*", None, _word),
        ("'", "'", "[A-Za-z][^ \t\n\r\u00a0]", _quotes(True)),
        (None, m["REDAUX"], None, _quotes(False)),
        ("nN", m["SREDAUX"], None, _quotes(False)),
        (None, m["QUOTES"], None, _quotes(False)),
        ("<>", "<<|>>", None, _keep),
        (_MISC_SYMBOLS, "[" + _MISC_SYMBOLS + "]", None, _keep),
        (
            "\x00 \t\u00a0\u2000-\u200a\u3000\u200b\u200e\u200f\ufeff",
            "\x00|[ \t\u00a0\u2000-\u200a\u3000]+|[\u200b\u200e\u200f\ufeff]",
            None,
            _skip,
        ),
        ("\r\n\u2028\u2029\x0b\x0c", m["NL"], None, _newline),
        ("&", "&(?i:nbsp);", None, _skip),
    ]


class _PTBLexer:
    """Stanford PTBTokenizer 3.4.1 as pycocoevalcap runs it, with JFlex's longest-match-then-first-rule choice."""

    _FAST = re.compile(r"[A-Za-z]+(?=[ \n]|\Z)")
    _SPACES = re.compile("[ \t\u00a0\u2000-\u200a\u3000]+")
    _SPECIAL = {"cannot", "gonna", "gotta", "lemme", "gimme", "wanna"}

    def __init__(self):
        m = _macros()

        def expand(pattern: str) -> str:
            return re.sub(r"\{([A-Z0-9]+)\}", lambda g: m.get(g.group(1), g.group(0)), pattern)

        self.rules = []
        for first, pat, ctx, action in _rules(m):
            rx = re.compile(f"({expand(pat)})" + (f"(?:{expand(ctx)})" if ctx else ""))
            self.rules.append((re.compile("[" + first.replace("[", "\\[") + "]") if first else None, rx, action))
        self._cands = {}

    def _candidates(self, ch):
        c = self._cands.get(ch)
        if c is None:
            c = self._cands[ch] = [(rx, act) for first, rx, act in self.rules if first is None or first.match(ch)]
        return c

    def lines(self, text: str) -> list[list[str]]:
        """Tokens of each line of ``text`` (cased; pycocoevalcap lowercases them afterwards)."""
        out, line, pos = [], [], 0
        while pos < len(text):
            ch = text[pos]
            if ch == " ":
                pos = self._SPACES.match(text, pos).end()
                continue
            if ch == "\n":
                out.append(line)
                line, pos = [], pos + 1
                continue
            # Shortcut for the common case, a plain word before a space: no rule matches more of it.
            plain = self._FAST.match(text, pos) if ch.isascii() and ch.isalpha() else None
            if plain and plain.group().lower() not in self._SPECIAL:
                line.append(plain.group())
                pos = plain.end()
                continue
            best, best_len = None, 0
            for rx, action in self._candidates(ch):
                match = rx.match(text, pos)
                if match and match.end() - pos > best_len:
                    best, best_len = (match.group(1), action), match.end() - pos
            if best is None:
                pos += 1  # untokenizable: deleted, as PTBTokenizer does by default
                continue
            tokens, used = best[1](best[0])
            for t in tokens:
                if t == _NEWLINE:
                    out.append(line)
                    line = []
                elif t:
                    line.append(t)
            pos += used
        out.append(line)
        return out


def _cased(c):
    return c.islower() or c.isupper() or c.istitle()


def _word_run(chars):
    """Characters up to the next word boundary, roughly as Java's word BreakIterator sees them."""
    return itertools.takewhile(lambda c: c in "_-.'\u2010\u2011" or (c.isalnum() and c < "\u2e80"), chars)


def java_lower(token):
    """``String.toLowerCase`` as Java does it: capital sigma is final unless a cased letter follows it."""
    if "\u03a3" not in token:
        return token.lower()
    out = []
    for i, c in enumerate(token):
        if c == "\u03a3":
            final = any(map(_cased, _word_run(reversed(token[:i])))) and not any(map(_cased, _word_run(token[i + 1 :])))
            out.append("\u03c2" if final else "\u03c3")
        else:
            out.append(c.lower())
    return "".join(out)


# pycocoevalcap's ``PTBTokenizer.PUNCTUATIONS``: tokens dropped after tokenization. Lowercasing comes
# first, so "-lrb-" and friends survive, as they do in the toolkit.
PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)
# Characters that end a line for the Java lexer. pycocoevalcap only replaces "\n" inside captions, so
# any of these would shift every later caption onto the wrong image; both tokenizers get spaces instead.
_LINE_BREAKS = re.compile("[\r\n\u000b\u000c\u2028\u2029]")


@lru_cache(maxsize=1)
def _lexer() -> _PTBLexer:
    return _PTBLexer()


def _clean(caption: str) -> str:
    return _LINE_BREAKS.sub(" ", caption)


def _strip_punctuation(line: str) -> str:
    return " ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS)


def ptb_tokenize(captions: Sequence[str]) -> list[str]:
    """Tokenize captions as pycocoevalcap's PTBTokenizer does, without Java.

    Give captions in the order the toolkit would see them (its dict order): the lexer reads them as
    one text and a line's last token can depend on the next line.
    """
    lines = _lexer().lines("\n".join(_clean(c) for c in captions))
    return [_strip_punctuation(" ".join(java_lower(t) for t in toks)) for toks in lines[: len(captions)]]


def java_available() -> bool:
    return shutil.which("java") is not None


def tokenize_captions(captions: Mapping, tokenizer: str = "python") -> dict:
    """``{id: [caption, ...]}`` -> ``{id: [tokenized caption, ...]}``, with ``tokenizer`` "java"
    (pycocoevalcap's PTBTokenizer) or "python" (:func:`ptb_tokenize`, same tokens)."""
    if tokenizer == "java":
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        return PTBTokenizer().tokenize({k: [{"caption": _clean(c)} for c in v] for k, v in captions.items()})
    if tokenizer != "python":
        raise ValueError(f"unknown tokenizer {tokenizer!r} (choose java or python)")
    flat = ptb_tokenize([c for v in captions.values() for c in v])
    out, i = {}, 0
    for k, v in captions.items():
        out[k], i = flat[i : i + len(v)], i + len(v)
    return out
