"""Templated caller turns for the trigger head: each trigger, and hard negatives, in more wordings than we wrote.

Deterministic: every template's slots are expanded in full, then a fixed-seed sample is kept per label.
"""

from __future__ import annotations

import itertools
import random
import re

# Each template is a string with {slot} names; SLOTS gives each slot's words. A row is one filling of a template.
Template = tuple[str, dict[str, tuple[str, ...]]]

_THING = ("my postcode", "my zip code", "my date of birth", "my name", "my address", "the PIN")
_TIMES = ("twice", "three times", "a minute ago", "already", "at the start", "four times now", "before")
_CALLER = ("my dad", "my wife", "my neighbour", "a man", "my son", "the old lady next door", "someone", "my partner")

TEMPLATES: dict[str, list[Template]] = {
    "loop": [
        (
            "I {gave} you {thing} {times}",
            {"gave": ("gave", "told", "read out", "spelled out"), "thing": _THING, "times": _TIMES},
        ),
        (
            "you {asked} for {thing} {times}",
            {
                "asked": ("asked", "already asked", "just asked"),
                "thing": _THING,
                "times": ("twice", "already", "a second ago", "three times"),
            },
        ),
        (
            "{lead}this is the same {what} {again}",
            {
                "lead": ("", "hang on, ", "ugh, "),
                "what": ("question", "menu", "script", "answer", "bit"),
                "again": ("again", "as before", "all over again"),
            },
        ),
        (
            "{lead}we keep coming back to {where}",
            {
                "lead": ("", "look, ", "honestly "),
                "where": ("the same place", "the beginning", "the main menu", "the same question"),
            },
        ),
        ("we're going {round}", {"round": ("nowhere", "in a loop", "back and forth for nothing")}),
        (
            "you {said} that {already}",
            {
                "said": ("said", "asked", "told me"),
                "already": ("already", "two minutes ago", "the last time", "just now"),
            },
        ),
        ("{why} are you asking {that} again", {"why": ("why", "how come"), "that": ("that", "me that", "for it")}),
        ("I've answered {that} {times}", {"that": ("that", "this", "the question"), "times": _TIMES}),
        ("{lead}not the same question again", {"lead": ("", "oh ", "please, ")}),
        ("every time I answer you start {over}", {"over": ("over", "again from the top", "from scratch")}),
    ],
    "repeated_failures": [
        (
            "{no}that's not what I {said}",
            {"no": ("", "no, ", "no no, "), "said": ("said", "asked", "meant", "asked for")},
        ),
        (
            "you {got} {it} wrong {again}",
            {
                "got": ("got", "heard", "put"),
                "it": ("it", "that", "my name", "the date"),
                "again": ("again", "a second time", "once more", "yet again"),
            },
        ),
        (
            "you {mis} me {again}",
            {
                "mis": ("misheard", "misunderstood", "got"),
                "again": ("again", "for the third time", "one more time", "every time"),
            },
        ),
        (
            "are you {even} {listening}",
            {"even": ("even", "actually", ""), "listening": ("listening", "listening to me", "hearing what I say")},
        ),
        ("you're not {following}", {"following": ("following", "following me", "getting it", "taking it in")}),
        (
            "that {doesnt} {answer} my question",
            {
                "doesnt": ("doesn't", "does not", "didn't"),
                "answer": ("answer", "have anything to do with", "help with"),
            },
        ),
        (
            "you {keep} {doing} the wrong {thing}",
            {
                "keep": ("keep", "just keep"),
                "doing": ("picking", "doing", "giving me"),
                "thing": ("thing", "option", "answer", "one"),
            },
        ),
        ("can you not understand {what}", {"what": ("plain English", "a simple question", "what I'm saying")}),
        (
            "{lead}wrong {what} {again}",
            {"lead": ("", "no, ", "ugh "), "what": ("one", "answer", "thing"), "again": ("again", "")},
        ),
        (
            "I {asked} about {a} and you {did} {b}",
            {
                "asked": ("asked", "called"),
                "a": ("my bill", "a visit", "my speed"),
                "did": ("told me about", "booked", "read out"),
                "b": ("something else", "an outage", "a payment"),
            },
        ),
    ],
    "requested_human": [
        (
            "{can} I {get} {who}",
            {
                "can": ("can", "could", "may"),
                "get": ("get", "have", "be put on with"),
                "who": (
                    "somebody from your team",
                    "someone in customer services",
                    "one of your staff",
                    "a member of staff",
                    "a human on the line",
                    "a person to help me",
                ),
            },
        ),
        (
            "{put} me {to} {who}",
            {
                "put": ("put", "transfer", "connect", "send"),
                "to": ("to", "through to"),
                "who": ("whoever's in charge", "your boss", "a person", "someone real", "a team member", "a human"),
            },
        ),
        (
            "{lead}I'd {rather} speak to {who}",
            {
                "lead": ("", "honestly, ", "look, "),
                "rather": ("rather", "prefer to", "much rather"),
                "who": ("a person", "someone real", "a human", "your staff"),
            },
        ),
        (
            "is there {who} I can {talk} to",
            {
                "who": ("a person", "an actual employee", "anyone real", "a human"),
                "talk": ("talk", "speak", "explain this"),
            },
        ),
        (
            "{no} more {robot}, {want}",
            {
                "no": ("no", "enough"),
                "robot": ("robot", "machines", "computer", "bots"),
                "want": ("I want a person", "get me a human", "give me someone real"),
            },
        ),
        (
            "{who} {please}",
            {
                "who": ("representative", "real person", "live person", "staff member", "advisor"),
                "please": ("please", "now", "now please", ""),
            },
        ),
        (
            "I need {who} {to} sort this",
            {"who": ("a human", "a person", "a real person", "somebody"), "to": ("to", "who can")},
        ),
        ("{lead}can you get your manager", {"lead": ("", "right, ", "okay ")}),
        (
            "{stop}, I want to talk to {who}",
            {
                "stop": ("stop", "hold on", "forget it"),
                "who": ("somebody", "a real human", "your supervisor", "a person"),
            },
        ),
    ],
    "anger": [
        (
            "I'm {so} {angry}",
            {
                "so": ("so", "really", "absolutely", "bloody", "well"),
                "angry": (
                    "cross",
                    "raging",
                    "steaming",
                    "vexed",
                    "irate",
                    "mad about this",
                    "hacked off",
                    "at my wits' end",
                ),
            },
        ),
        (
            "this is {verdict}",
            {
                "verdict": (
                    "beyond a joke",
                    "shambolic",
                    "a total mess",
                    "criminal",
                    "pathetic service",
                    "unbelievable",
                    "appalling",
                    "a farce",
                )
            },
        ),
        (
            "how dare you {do}",
            {"do": ("charge me for that", "cut me off", "treat a customer like this", "send me that bill")},
        ),
        (
            "I've been with you {years} and this is how you treat me",
            {"years": ("ten years", "twenty years", "since the start", "for ages")},
        ),
        (
            "I've {called} {times} about {this}",
            {
                "called": ("called", "rung", "phoned"),
                "times": ("five times", "every day this week", "over and over"),
                "this": ("this", "the same thing"),
            },
        ),
        (
            "I'm {not} {happy} {about}",
            {
                "not": ("not", "far from", "really not"),
                "happy": ("pleased", "impressed", "amused", "happy"),
                "about": ("with this", "about this at all", "one bit"),
            },
        ),
        (
            "every {period} something goes wrong with {what}",
            {"period": ("month", "week", "single time"), "what": ("your service", "this connection", "my bill")},
        ),
        (
            "{lead}I've had enough of {who}",
            {"lead": ("", "honestly ", "right, "), "who": ("this", "you people", "your company", "this rubbish")},
        ),
    ],
    "abuse": [
        (
            "you {adj} {noun}",
            {
                "adj": ("useless", "brain dead", "pathetic", "dim", "worthless", "hopeless", "incompetent"),
                "noun": ("robot", "machine", "git", "fool", "numpty", "prat", "pillock", "excuse for a bot"),
            },
        ),
        (
            "{go}",
            {
                "go": (
                    "bog off",
                    "naff off",
                    "get lost",
                    "sod off",
                    "bugger off",
                    "drop dead",
                    "up yours",
                    "get bent",
                    "shove it",
                )
            },
        ),
        (
            "{shut} {you}",
            {
                "shut": ("shut your trap", "shut your face", "button it", "shut up"),
                "you": ("", "you idiot", "you stupid machine"),
            },
        ),
        ("what a {noun} you are", {"noun": ("useless lump", "waste of time", "joke", "clown", "moron")}),
        (
            "you're {a} {noun}",
            {
                "a": ("a", "an absolute", "a complete", "a total"),
                "noun": ("disgrace of a machine", "idiot", "useless heap", "brainless lump", "joke of a robot"),
            },
        ),
        (
            "{damn} you {and}",
            {"damn": ("damn", "curse", "to hell with"), "and": ("", "and your company", "and your stupid questions")},
        ),
    ],
    "legal_threat": [
        (
            "{lead}I'll {go} {where}",
            {
                "lead": ("", "right, ", "mark my words, "),
                "go": ("be going", "take this", "go straight"),
                "where": ("to the regulator", "to trading standards", "to court", "to the ombudsman", "to a solicitor"),
            },
        ),
        (
            "this is {illegal} and {act}",
            {
                "illegal": ("illegal", "against the law", "unlawful"),
                "act": ("I'll be pursuing it", "I know my rights", "I'll be taking it further", "you'll answer for it"),
            },
        ),
        (
            "my {lawyer} {will}",
            {
                "lawyer": ("lawyer", "solicitor", "attorney", "legal team", "barrister"),
                "will": (
                    "is going to hear about this",
                    "will be writing to you",
                    "will deal with you",
                    "is on speed dial",
                ),
            },
        ),
        (
            "{lead}I'm {reporting} you to {who}",
            {
                "lead": ("", "right, "),
                "reporting": ("reporting", "going to report"),
                "who": (
                    "trading standards",
                    "citizens advice",
                    "the regulator",
                    "the state attorney",
                    "the FTC",
                    "the public service commission",
                ),
            },
        ),
        (
            "{expect} {letter}",
            {
                "expect": ("expect", "you'll get", "there'll be"),
                "letter": ("a letter from my solicitor", "court papers", "a legal claim", "to be taken to court"),
            },
        ),
        (
            "I'm {taking} legal {action}",
            {
                "taking": ("taking", "starting", "going to take"),
                "action": ("action", "advice", "proceedings", "action against you"),
            },
        ),
    ],
    "emergency": [
        (
            "{thing} is {burning}",
            {
                "thing": ("the router", "the socket", "the extension lead", "the box", "my modem", "the wall plug"),
                "burning": ("smouldering", "melting and smoking", "on fire", "sparking and smoking"),
            },
        ),
        (
            "{who} {bad}",
            {
                "who": _CALLER,
                "bad": (
                    "has collapsed",
                    "is unconscious",
                    "isn't breathing",
                    "is bleeding badly",
                    "is having a stroke",
                    "is having a seizure",
                    "took an overdose",
                    "fell down the stairs and can't move",
                ),
            },
        ),
        (
            "{call} {service}",
            {
                "call": ("get me", "send", "I need"),
                "service": ("the police", "the fire brigade", "paramedics", "999", "emergency services"),
            },
        ),
        (
            "{help}, {what}",
            {
                "help": ("help", "please help", "help me"),
                "what": ("there's a fire", "someone's hurt", "he's not breathing", "I think she's dying"),
            },
        ),
        (
            "I {need} {service} {but} {line} {dead}",
            {
                "need": ("need to call", "have to reach", "can't get"),
                "service": ("an ambulance", "the police", "nine one one", "the fire service", "a doctor"),
                "but": ("but", "and"),
                "line": ("the line", "my phone", "the landline"),
                "dead": ("is dead", "won't connect", "has no tone"),
            },
        ),
        (
            "{who} is {threat}",
            {
                "who": ("a man", "someone", "my ex", "a stranger"),
                "threat": ("outside with a knife", "trying to get in", "threatening to kill me", "hitting me"),
            },
        ),
        ("I'm going to {act}", {"act": ("hurt myself", "kill myself", "end it all")}),
        ("I {smell} {what}", {"smell": ("smell", "can smell"), "what": ("gas", "smoke", "burning")}),
        (
            "the {cable} {fell} and {now}",
            {
                "cable": ("cable", "pole", "overhead line"),
                "fell": ("came down", "snapped", "fell"),
                "now": ("it's live", "kids are near it"),
            },
        ),
        (
            "my {mum}'s {alarm} is down and she {fell}",
            {
                "mum": ("mum", "gran", "dad"),
                "alarm": ("alarm line", "panic button", "care line"),
                "fell": ("has fallen", "needs help", "can't get up"),
            },
        ),
    ],
    "fraud": [
        (
            "someone {did} {what}",
            {
                "did": ("has been", "is", "keeps"),
                "what": (
                    "using my account behind my back",
                    "logging into my account",
                    "getting into my email with you",
                    "changing my details",
                ),
            },
        ),
        (
            "there {are} {charges} I never {made}",
            {
                "are": ("are", "'s", "'re"),
                "charges": ("payments on my bill", "direct debits", "charges from you", "orders on my account"),
                "made": ("made", "set up", "agreed to", "authorised"),
            },
        ),
        (
            "my {number} was {ported} without {asking}",
            {
                "number": ("number", "line", "landline"),
                "ported": ("ported out", "moved", "transferred"),
                "asking": ("asking me", "my say-so", "my knowledge"),
            },
        ),
        (
            "{got} a {call} from someone {claiming} asking for my {detail}",
            {
                "got": ("I got", "I had"),
                "call": ("call", "text", "email"),
                "claiming": ("saying they were from you", "claiming to be northwind"),
                "detail": ("bank details", "card number", "security answers"),
            },
        ),
        (
            "{who} {opened} a {thing} with my details",
            {
                "who": ("someone", "a stranger", "somebody"),
                "opened": ("opened", "took out", "set up"),
                "thing": ("contract", "broadband line", "account"),
            },
        ),
        (
            "{money} {gone} from my {card}",
            {
                "money": ("money's", "a payment's", "two hundred quid's"),
                "gone": ("been taken", "gone", "come out"),
                "card": ("bank", "card", "account"),
            },
        ),
        ("my {sim} was swapped", {"sim": ("SIM", "sim card", "number")}),
        (
            "I {think} my {account} {was} {broken}",
            {
                "think": ("think", "reckon"),
                "account": ("account", "login", "email"),
                "was": ("was", "has been"),
                "broken": ("broken into", "taken over", "accessed by a stranger"),
            },
        ),
    ],
    "none": [
        (
            "{name} is the account holder, {req}",
            {
                "name": ("Sue", "Frank", "Rob", "Grace", "Chase", "Justin", "Mercy", "Faith", "Hunter", "Hope"),
                "req": (
                    "can I pay her bill",
                    "can I book a visit for him",
                    "she's away this week",
                    "what's the balance",
                ),
            },
        ),
        (
            "{hi} this is {name} {surname}, {req}",
            {
                "hi": ("hi", "hello"),
                "name": ("Sue", "Frank", "Rob", "Angel", "Justice", "Storm"),
                "surname": ("Law", "Fury", "Burns", "Killer", "Payne", "Cross"),
                "req": ("I'd like to book a technician", "calling about my bill", "my wifi is slow"),
            },
        ),
        (
            "I'm {a} {job}, {req}",
            {
                "a": ("a", "the"),
                "job": (
                    "store manager",
                    "account manager",
                    "customer service rep",
                    "solicitor",
                    "paramedic",
                    "firefighter",
                    "night supervisor",
                    "operator at a call centre",
                ),
                "req": ("so mornings are best for a visit", "and need a faster plan", "can I change my billing date"),
            },
        ),
        (
            "my {product} {problem}",
            {
                "product": (
                    "Fire TV",
                    "Firestick",
                    "Fire tablet",
                    "Firefox browser",
                    "Killer network card",
                    "Angry Birds game",
                    "Panic button app",
                    "Ring doorbell",
                ),
                "problem": ("keeps dropping the wifi", "won't connect", "is buffering", "is slow tonight"),
            },
        ),
        (
            "what {happens} if {case}",
            {
                "happens": ("happens", "would happen", "do I do"),
                "case": (
                    "someone steals the router",
                    "there's a fire in the building",
                    "I want to speak to someone later",
                    "my payment fails",
                    "I get a scam call",
                    "my lawyer needs a copy of my contract",
                ),
            },
        ),
        (
            "{who} {bad}, {req}",
            {
                "who": ("my neighbour", "my cousin", "my friend", "my sister"),
                "bad": (
                    "got scammed last year",
                    "had a fire last month",
                    "is furious with her provider",
                    "took her provider to court",
                ),
                "req": ("so I want paper bills", "is my account safe", "can you check my security settings"),
            },
        ),
        (
            "I {already} {did}, {req}",
            {
                "already": ("already", "just"),
                "did": ("paid", "rebooted it", "got the email"),
                "req": ("can you check", "what's next", "thanks"),
            },
        ),
        (
            "can you {say} {that} again",
            {"say": ("say", "read", "send"), "that": ("that", "the code", "the times", "the address")},
        ),
        (
            "does {who} need to be {there}",
            {
                "who": ("someone", "a person", "an adult"),
                "there": ("home for the visit", "there in person", "present for the install"),
            },
        ),
        (
            "I'd like to {transfer} {what}",
            {
                "transfer": ("transfer", "move", "switch"),
                "what": ("my service to my new flat", "the account to my husband", "the line to my office"),
            },
        ),
        (
            "{it} is still {state}, {req}",
            {
                "it": ("the light", "the router", "my speed"),
                "state": ("orange", "blinking", "around 20 meg"),
                "req": ("what should I try", "is that normal", "can you run a test"),
            },
        ),
        (
            "{strong} {req}",
            {
                "strong": ("damn,", "bloody hell,", "oh god,", "holy moly,", "jeez,"),
                "req": (
                    "I can't find my account number",
                    "that was quick",
                    "the bill's higher than I thought",
                    "I missed the technician",
                ),
            },
        ),
        # Negation and idiom: the embedding reads "not angry" close to "angry", so these say it apart.
        (
            "I'm not {feeling}, {req}",
            {
                "feeling": (
                    "angry",
                    "upset",
                    "cross",
                    "complaining",
                    "annoyed",
                    "asking for a manager",
                    "asking for an agent",
                    "after a person",
                ),
                "req": (
                    "I just want my balance",
                    "I only need a visit booked",
                    "it's fine",
                    "just curious about the plans",
                ),
            },
        ),
        (
            "{it} not {what}, {req}",
            {
                "it": ("it's", "this is", "that's"),
                "what": ("a fire", "an emergency", "urgent", "a complaint", "fraud", "a scam", "dangerous"),
                "req": (
                    "just a blinking light",
                    "I only want to move my visit",
                    "the router's a bit warm",
                    "just a question about my bill",
                ),
            },
        ),
        (
            "no need for {who}, {done}",
            {
                "who": ("a supervisor", "a manager", "a human", "anyone else", "a person"),
                "done": ("that's sorted", "you've helped", "I've got it now", "thanks"),
            },
        ),
        (
            "I'm not going to {act}, {req}",
            {
                "act": ("sue", "complain", "take it further", "make a fuss"),
                "req": ("I just want it fixed", "it's fine", "just tell me the date"),
            },
        ),
        (
            "nothing's {bad}, I just {did}",
            {
                "bad": ("been stolen", "wrong with the account", "on fire", "been hacked"),
                "did": ("moved the router", "want an upgrade", "changed my card"),
            },
        ),
        (
            "the {what} is dead {where}",
            {
                "what": ("signal", "wifi", "landline", "phone socket", "TV box"),
                "where": ("upstairs", "in the garden office", "in the loft", "again", "since the storm"),
            },
        ),
        (
            "I {spoke} {who} {when}, {req}",
            {
                "spoke": ("spoke to", "talked to", "had"),
                "who": ("an agent", "a manager", "someone", "one of your people"),
                "when": ("last week", "yesterday", "on Monday"),
                "req": ("and they sorted it", "they said I'd get a credit", "is the visit still on"),
            },
        ),
        (
            "how do I {report} a {scam} I {got}",
            {
                "report": ("report", "forward", "block"),
                "scam": ("scam text", "phishing email", "spam call"),
                "got": ("received", "got", "had this morning"),
            },
        ),
        (
            "sorry, I was {talking} to {who}",
            {"talking": ("talking", "speaking"), "who": ("someone else", "my son", "the dog", "my wife")},
        ),
        (
            "my {boss} {said} {req}",
            {
                "boss": ("line manager", "property manager", "team supervisor", "office manager"),
                "said": ("asked me to", "wants me to", "told me to"),
                "req": ("get a receipt", "book the install", "check the contract end date"),
            },
        ),
        (
            "{happy} with the {what}",
            {
                "happy": ("I'm really happy", "I'm pleased", "we love it"),
                "what": ("service", "new speed", "engineer", "router"),
            },
        ),
        (
            "the {thing} is {bad} {where}, can I get {fix}",
            {
                "thing": ("wifi", "signal", "speed"),
                "bad": ("crap", "rubbish", "shocking", "useless"),
                "where": ("in the kitchen", "upstairs", "in the garden"),
                "fix": ("a booster", "a mesh point", "an engineer to look"),
            },
        ),
        (
            "my {who} said your {company} is {bad} but {req}",
            {
                "who": ("friend", "mum", "neighbour"),
                "company": ("company", "service"),
                "bad": ("terrible", "awful", "a rip-off"),
                "req": ("I thought I'd give you a go", "I'd like to sign up", "you've been fine for me"),
            },
        ),
        (
            "{we} {org}, {req}",
            {
                "we": ("our business is", "I work at", "I volunteer at", "this is"),
                "org": (
                    "the Legal Aid Society",
                    "Fireside Books",
                    "the county fire station",
                    "Crisis Line charity",
                    "Killarney Lodge",
                    "the Justice Centre",
                ),
                "req": ("we need a second line", "can we upgrade", "the bill went up"),
            },
        ),
        (
            "{can} {change} my emergency {contact}",
            {
                "can": ("can I", "I'd like to", "please"),
                "change": ("update", "change", "add"),
                "contact": ("contact", "contact number", "number", "contact to my sister"),
            },
        ),
        (
            "{what} the emergency {thing}",
            {
                "what": ("what's", "how much is", "do you charge for"),
                "thing": ("callout fee", "repair option", "engineer rate"),
            },
        ),
        (
            "my {thing} was {stolen} so {req}",
            {
                "thing": ("bike", "car", "van", "bag"),
                "stolen": ("stolen", "nicked"),
                "req": ("I need to move my visit", "can the engineer come later", "I'll pay by bank transfer"),
            },
        ),
    ],
}


def _fill(template: str, slots: dict[str, tuple[str, ...]]) -> list[str]:
    names = list(slots)
    out = []
    for values in itertools.product(*(slots[n] for n in names)):
        text = template.format(**dict(zip(names, values, strict=True)))
        out.append(re.sub(r"\s+", " ", text).strip(" ,"))
    return out


def rows(per_label: int = 120, negatives: int = 300, seed: int = 7) -> list[tuple[str, str]]:
    """(text, label) rows: up to `per_label` for each trigger and `negatives` for none, spread over templates."""
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    for label, templates in TEMPLATES.items():
        want = negatives if label == "none" else per_label
        share = max(1, want // len(templates))
        for template, slots in templates:
            filled = sorted(set(_fill(template, slots)))
            rng.shuffle(filled)
            out.extend((text[0].upper() + text[1:] if rng.random() < 0.5 else text, label) for text in filled[:share])
    return out
