"""What the caller's words say to the supervisor: the escalation trigger a turn carries, read with patterns."""

from __future__ import annotations

import re
from dataclasses import dataclass

# What the caller's words say, trigger by trigger. Each cue is a regex over the lower-cased utterance with its
# punctuation kept (clauses matter), plus how context may cancel it: a negation just before it ("I don't need a
# human"), a hypothetical or long-past clause ("what if the router caught fire", "stolen last year"), or a title
# or a question about prevention ("the Identity Thief movie", "how do I protect my account from fraud").
_NEGATION = re.compile(
    r"\b(?:not|never|no need|without|cannot|do i (?:need|have) to|\w+n't|dont|cant|wont|didnt|doesnt|isnt|wasnt|"
    r"nothing|nobody|no one|no-one)\b"
)
_IRREALIS = re.compile(
    r"\b(?:if|suppose|supposing|what if|in case|whether|hypothetically|would (?:it|that|the|this|happen)|"
    r"is it (?:normal|safe|okay|ok|covered|possible)|in an emergency|last (?:year|month)|"
    r"(?:years|months|weeks) ago|a while ago|long ago|ever)\b"
)
_TITLE = re.compile(r"\b(?:documentary|movie|film|show|episode|series|podcast|channel|named|name is)\b")
_PREVENTION = re.compile(r"\b(?:protect\w*|prevent\w*|worried|worry|safe|secure|covered|insured|insurance)\b")
# Someone else's misfortune ("my neighbour's router was stolen") is not a report about this account.
_THIRD_PARTY = re.compile(r"\b(?:neighbou?r|friend|colleague|cousin|brother|sister|co-?worker)s?(?:'s)?\b")
# Speech-to-text often drops apostrophes; these words are contractions whatever the context.
_CONTRACTIONS = {
    w.replace("'", ""): w
    for w in [
        "i'm",
        "i've",
        "i'll",
        "you're",
        "you've",
        "we're",
        "we've",
        "they're",
        "it's",
        "that's",
        "there's",
        "what's",
        "don't",
        "doesn't",
        "didn't",
        "can't",
        "couldn't",
        "won't",
        "wouldn't",
        "isn't",
        "aren't",
        "wasn't",
        "weren't",
        "haven't",
        "hasn't",
        "shouldn't",
    ]
}
_APOSTROPHES = re.compile(r"\b(?:" + "|".join(_CONTRACTIONS) + r")\b")
# A clause ends at punctuation or at a word that starts a new thought ("..., just tell me my balance").
_CLAUSE_END = re.compile(r"[.,;:!?]|\b(?:but|and|so|just|then|because)\b")


@dataclass(frozen=True)
class _Cue:
    pattern: re.Pattern[str]
    negatable: bool = True
    irrealis: bool = False
    titles: bool = False
    prevention: bool = False
    third_party: bool = False


def _cues(*patterns: str, **context: bool) -> list[_Cue]:
    return [_Cue(re.compile(p), **context) for p in patterns]


def _bare(body: str) -> str:
    """A whole clause saying only `body` ("Agent!", "Useless.", "Human, please")."""
    return rf"(?:^|(?<=[.,;:!?]))\s*(?:{body})\s*(?=[.,;:!?]|$)"


_DET = r"(?:(?:a|an|the|your|some|one of your|any)\s+)?"
_ADJ = r"(?:(?:real|live|actual|proper|human|other|another|different)\s+)?"
_PERSON = (
    r"(?:person|people|human(?: being)?s?|someone|somebody|anyone|anybody|agents?|representatives?|reps?|operators?|"
    r"managers?|supervisors?|team leaders?|advisors?|advisers?|staff(?: member)?|colleagues?|"
    r"member of (?:staff|your team)|"
    r"customer (?:service|support|care)|boss|someone senior|complaints? (?:team|department))\b"
)
_PERSON_SINGLE = r"(?:person|human(?: being)?|manager|supervisor|agent|representative|rep|operator|team leader)\b"
_NOT_A_PERSON = r"(?!\s+(?:special|mode|page|app|plan|account|portal|login|password|settings))"
_VERDICT = (
    r"(?:useless|pathetic|unbelievable|hopeless|ridiculous|unacceptable|outrageous|disgraceful|disgusting|shameful|"
    r"appalling|atrocious|incompetent|terrible|awful|horrible|rubbish|garbage|shocking|diabolical|absurd|lousy|"
    r"crap|crappy|shit|shitty|a joke|a disgrace|a farce|a nightmare|a shambles|a scandal|a rip ?off)"
)
_INSULT = (
    r"(?:idiot|moron|imbecile|cretin|bitch|bastard|asshole|arsehole|dickhead|prick|twat|cunt|jerk|loser|clown|"
    r"muppet|retard|scum|dumbass|douche(?:bag)?|cow|pig|thie(?:f|ves)|crooks?|robbers?|con artists?)s?"
)

CUES: dict[str, list[_Cue]] = {
    "emergency": _cues(
        r"\b(?:on fire|caught fire|catch(?:es|ing)? fire|burst(?:ing)? into flames|in flames|flames|"
        r"(?:there's|there is|we have|i have|there's been) a fire|fire in (?:the|my|our)|house fire)\b",
        r"\b(?:is|are|it's|'s|and|started|keeps?|been)\s+(?:\w+\s+){0,2}?(?:smoking|burning|melting|sparking)\b"
        r"(?!\s+(?:through|up (?:my|the)))",
        r"\bsmok(?:e|ing)\s+(?:is\s+)?(?:coming|pouring|billowing|everywhere)\b",
        r"\bburn(?:ing|t) smell\b|\bsmell(?:s|ing)?\s+(?:of\s+)?(?:burning|smoke|gas)\b|\bsmell gas\b",
        r"\bgas (?:leak|line|main|pipe)\b|\bsparks?\s+(?:are\s+|is\s+)?(?:flying|coming|everywhere|shooting)\b",
        r"\belectrocut\w*|\b(?:got|get|getting|been|was|were)\s+(?:an?\s+)?(?:electric\s+)?shock(?:ed)?\b"
        r"(?!\s+(?:by|at|to|that|when|with))",
        r"\b(?:live|exposed|bare|fallen|downed)\s+(?:power\s+)?(?:wires?|cables?|lines?|poles?)\b",
        r"\b(?:power|electric|electrical)\s+(?:lines?|cables?|wires?)\s+(?:is\s+|are\s+)?(?:down|fallen|sparking)\b",
        r"\b(?:wires?|cables?|lines?|poles?)\s+(?:is\s+|are\s+)?down\s+(?:in|on|across|over)\s+(?:the|my|our)\b",
        r"\b(?:cables?|wires?|lines?|poles?|trees?)\s+(?:\w+\s+)?(?:fell|has fallen|came down|snapped|collapsed)\b",
        r"\bpole\s+(?:is\s+)?(?:leaning|about to fall|falling|collapsing)\b",
        r"\b(?:cables?|wires?|lines?)\b[^.,;:!?]{0,30}\b(?:is|it's|'s|are) live\b|\bbrought down (?:the|a|our|my) "
        r"(?:cables?|lines?|wires?|poles?)\b",
        r"\b(?:is|are|'s)\s+(?:badly\s+|seriously\s+)?(?:hurt|injured|bleeding)\b",
        r"\b(?:it's|it is|this is|we have|i have|there's|there is|got) an emergency\b",
        r"\b(?:someone|somebody|child|kid|worker|technician|driver|person|man|woman|he|she|son|daughter)"
        r"(?:'s|\s+is|\s+are|\s+was|\s+got|\s+has been)?\s+(?:badly\s+|seriously\s+)?(?:hurt|injured|bleeding)\b",
        r"\bfell off (?:the|a|his|her) (?:ladder|roof|pole)\b|\bexplod(?:ed|ing|es)\b|\bblew up\b",
        r"\b(?:collapsed|unconscious|not breathing|heart attack|ambulance|overdose)\b",
        r"\bmedical (?:alarm|alert|pendant|device)\b",
        irrealis=True,
        titles=True,
    )
    + _cues(r"\b(?:call|dial|reach|ring|get)\s+911\b", negatable=False),
    "fraud": _cues(
        r"\b(?:de)?fraud(?:ulent(?:ly)?|sters?|ed)?\b(?!\s+(?:protection|prevention|squad))",
        r"\bidentity (?:theft|thief|fraud)\b(?!\s+protection)|\b(?:stole|stolen)\s+(?:my\s+)?identity\b",
        r"(?<!\bi )(?<!\byou )\b(?:stole|stolen|theft|thief|thieves|robbed|burglar\w*|burgled|looted|mugged)\b",
        r"\b(?:someone|somebody|they|a stranger)(?: else)?\s+(?:is\s+|are\s+|has been\s+|have been\s+|was\s+)?"
        r"(?:using|used)\s+my\s+(?:name|identity|details|card|bank|social)\b",
        r"\b(?:accessed|logged into|got into|been using|used|changed|took over)\b[^.,;:!?]{0,25}"
        r"\b(?:someone|somebody) else\b",
        r"\b(?:someone|somebody)(?: else)? (?:has |had )?(?:accessed|logged into|got into|been using)\s+my\b",
        r"\brobbery\b(?!\s+alert)|\b(?:broke|broken|break)\s+into\b|\bbreak-in\b",
        r"\bhacked\b|\bhackers?\b|\bcompromised\b",
        r"\b(?:i|we)(?:'ve| have)?\s+(?:been\s+|was\s+|were\s+|got\s+|just\s+)?scammed\b|\bscammers?\b",
        r"\b(?:pretending|claiming|posing|purporting)\s+(?:to be|as)\b|\bimpersonat\w*",
        r"\bfake\s+(?:northwind|technician|engineer|website|site|invoice|bill|call|email)\b",
        r"\bwithout my (?:permission|consent|knowledge|authori[sz]ation|approval)\b|\bunauthori[sz]ed\b",
        r"\b(?:opened|set up|signed up|took out|created|registered)\b[^.,;!?]{0,40}\bin my name\b",
        r"\b(?:taken|took) over my account\b",
        r"\bvictim of (?:an?\s+)?(?:scam|fraud|theft|identity theft|crime|robbery|burglary|hack|con)\b",
        irrealis=True,
        titles=True,
        prevention=True,
        third_party=True,
    )
    + _cues(
        r"\b(?:wasn't|was not|wasnt) me\b",
        r"\b(?:account|service|line|contract)s?\b[^.,;:!?]{0,30}\bi (?:never|didn't|did not) "
        r"(?:open|opened|sign up|signed up|order|ordered|authori[sz]e)",
        negatable=False,
    ),
    "legal_threat": _cues(
        r"\b(?:i|we|i'll|we'll|will|gonna|going to|to)\s+sue\b|\bsue\s+(?:you|your|northwind|the company|them|for)\b",
        r"\bsu(?:ing|ed)\b",
        r"\b(?:call(?:ing)?|contact(?:ing)?|talk(?:ing)? to|speak(?:ing)? to|hear(?:ing)? from|from|for|to|have|"
        r"get(?:ting)?|want|consult(?:ing)?|with|involv(?:e|ing))\s+(?:my|our)\s+"
        r"(?:lawyer|attorney|solicitor|legal team)s?\b(?!')",
        r"\b(?:my|our)\s+(?:lawyer|attorney|solicitor|legal team)s?\s+(?:will|'ll|is going to|says|said|advised|"
        r"is (?:looking|handling|dealing)|on this|about this|be in touch)\b",
        r"\b(?:call|calling|called|contact|contacted|contacting|spoken to|speaking to|talking to|talked to|"
        r"consult(?:ed|ing)?|hire|hired|hiring|get|getting|got|hear(?:ing)? from)\s+(?:an?|my|our)\s+(?:\w+\s+){0,2}?"
        r"(?:lawyer|attorney|solicitor|legal team)s?\b",
        r"\b(?:legal (?:action|advice|proceedings|team|counsel|route)|lawsuit|class action|small claims|"
        r"breach of contract|press(?:ing)? charges|ombudsman|attorney general|better business bureau|bbb|"
        r"consumer (?:protection|affairs)|regulator|(?:utilities|utility|public service) commission|legally)\b",
        r"\bget(?:ting)? legal\b|\b(?:to|with|contact(?:ing)?|call(?:ing)?) the (?:fcc|ftc)\b",
        r"\b(?:to|in|into|the)\s+(?:small claims\s+)?courts?\b"
        r"(?!\s+(?:street|st|road|rd|avenue|ave|tv|date|house|lane|drive))",
        r"\breport(?:ing)?\s+(?:you|this|it|northwind|your company)\s+to\b",
        titles=True,
    ),
    "requested_human": _cues(
        r"\b(?:(?:speak|talk|chat|deal|discuss (?:this|it|that)|have a word|get through)\s+(?:to|with)|"
        r"reach|get hold of)\s+" + _DET + _ADJ + _PERSON,
        r"\b(?:put|get|transfer(?:red)?|connect(?:ed)?|pass(?:ed)?|hand(?:ed)?|patch(?:ed)?|send)\s+(?:me\s+)?"
        r"(?:through\s+|over\s+|on\s+)?(?:to|with)\s+" + _DET + _ADJ + _PERSON,
        r"\b(?:get|give|put|find|fetch)\s+(?:me\s+(?:a|an|your|the|some)|a|an|your)\s+"
        + _ADJ
        + _PERSON_SINGLE
        + _NOT_A_PERSON,
        r"(?<!\bno )\b(?:want|need|like|prefer|rather have|ask(?:ing)? for|demand(?:ing)?|request(?:ing)?)\s+"
        r"(?:to (?:have|get)\s+)?(?:a|an|your|the|some)\s+" + _ADJ + _PERSON_SINGLE + _NOT_A_PERSON,
        r"\b(?:get|give|put)\s+(?:me\s+)?(?:someone|somebody|anyone|a person|a human)\s+on the (?:line|phone)\b",
        r"\b(?:someone|somebody) (?:real|in charge)\b",
        r"\b(?:person|human|someone|somebody|agent|manager|supervisor)(?: from (?:northwind|your \w+))?"
        r"\s+(?:to\s+)?(?:(?:call|ring|phone) me|give me a (?:call|ring|callback))\b",
        r"\bcall ?back from\s+" + _DET + _ADJ + _PERSON,
        r"\b(?:someone|somebody|anyone|anybody|person|human)(?: else)?(?: there)? (?:i|we) (?:can|could) "
        r"(?:actually )?(?:talk|speak)",
        r"\bescalate (?:this|it|me|my (?:call|complaint|case))\b|\b(?:this|it|my (?:call|complaint|case)) escalated\b",
        _bare(
            r"(?:(?:please|just|can i have|i want|i need|give me|get me)\s+)?(?:an?\s+|the\s+)?"
            r"(?:agent|representative|rep|operator|human|person|real person|live agent|live person|customer service|"
            r"customer support|manager|supervisor|transfer me)(?:\s+(?:please|now|agent|representative|operator))*"
        ),
    )
    + _cues(
        r"\b(?:don't|do not|dont)\s+(?:want|wanna|like)\s+(?:to\s+(?:talk|speak|deal)\s+(?:to|with)\s+)?"
        r"(?:an?\s+|the\s+|this\s+|some\s+)?(?:machine|robot|bot|computer|recording|automated \w+)\b",
        negatable=False,
    ),
    "abuse": _cues(
        r"\byou(?:'re| are)?\s+(?:(?:a|an|the|such an?|so|just|absolute|total|complete|utter|bloody|fucking|stupid|"
        r"useless|dumb|little|bunch of)\s+){0,3}" + _INSULT + r"\b",
        r"\b(?:stupid|dumb|dumbest|brainless|worthless|idiotic|fucking|bloody|crappy|shitty)\s+(?:\w+\s+)?"
        r"(?:bot|robot|machine|computer|thing|system|piece of \w+|cow|idiot)\b",
        r"\b(?:fuck(?:ing)?|f|eff|effing|feck) (?:you|off|yourself|u)\b|\bgo fuck\b|\bscrew (?:you|u)\b",
        r"\bstfu\b|\bkiss my ass\b",
        r"\bshut (?:up|the fuck up|your (?:mouth|face|trap))\b|\bgo to hell\b|\bpiss off\b|\bup yours\b",
        r"\bdrop dead\b|\beat shit\b|\bdamn you\b|\bshove it\b|\bbugger off\b|\bsod off\b",
        r"\b(?:piece|pile|sack|load) of (?:shit|crap)\b|\bare you (?:deaf|stupid|thick|dumb|retarded)\b",
        r"\byou(?:'re| are)\s+(?:so\s+|just\s+|really\s+|an?\s+)?"
        r"(?:(?:fucking|bloody|effing)\s+\w+|stupid|dumb|thick|retarded)\b",
        _bare(r"(?:just\s+|oh\s+)?get lost(?:\s+you\s+\w+(?:\s+\w+)?)?"),
    ),
    "repeated_failures": _cues(
        r"\byou(?:'re| are) not (?:understanding|getting|listening|hearing)\b",
        r"\byou (?:just |still |really |simply )?(?:never|don't|do not|dont|can't|cannot|haven't)\s+(?:\w+\s+)?"
        r"(?:understand|understood|get it|get what|hear|listen)\w*",
        r"\b(?:can'?t|don'?t|won'?t) you (?:understand|hear|get|listen)\b",
        r"\b(?:keep|keeps|kept)\s+(?:getting (?:\w+\s+){1,2}wrong|misunderstanding|mishearing|misreading)\b",
        r"\bhow many times do i (?:have|need|got) to (?:repeat|say|tell you|explain)\b",
        r"\bnot what i (?:said|asked|meant)\W+again\b",
        _bare(r"wrong again"),
        negatable=False,
    ),
    "loop": _cues(
        r"\b(?:already|just)\s+(?:asked|said|told|answered|gave|given|went over)"
        r"(?=\s+(?:me|you|that|this|it|twice|already|yes|no|so)\b|\s*[.,;:!?]|\s*$)",
        r"\b(?:asked|said|told|answered|gave|given)(?:\s+(?:you|me))?(?:\s+(?:that|this|it|yes|no))?\s+"
        r"(?:already|before|twice|(?:like\s+)?(?:two|three|four|five|six|ten|several|many|multiple|\d+) times)\b",
        r"\b(?:round|around) (?:and round|in circles)\b|\bin circles\b|\bin a loop\b|\bround and round\b",
        r"\b(?:keep|keeps|kept)\s+(?:asking|saying|repeating|telling me|going back)\b",
        r"\brepeating (?:yourself|the same|that)\b",
        r"\basking (?:me )?(?:the same|that again)\b|\bsame (?:question|answer|thing|reply)s?\s+(?:again|you)\b",
        r"\b(?:we've|we have) (?:been over|gone over|done) (?:this|that)\b",
        r"\byou (?:asked|said) (?:me )?(?:that|this|it)\b",
        _bare(r"not this again"),
        negatable=False,
    ),
    "anger": _cues(
        _bare(
            r"(?:(?:absolutely|totally|completely|utterly|just|so|simply|bloody|how|what|really|this is|that's|it's|"
            r"you're|you are|you guys are|you people are)\s+){0,2}"
            + _VERDICT
            + r"(?:\s+(?:service|company|people))?(?:\s+(?:again|as usual|as always))?"
        ),
        r"\b(?:this|that|it|you|you guys|you people|you lot|you all|your (?:\w+\s+){0,2}?\w+|northwind|"
        r"(?:this|that|the|my) "
        r"(?:\w+\s+)?(?:bill|service|internet|connection|wifi|company|support|router|modem|price|charges?|fees?|plan|"
        r"speed|technicians?|engineer|wait|experience|system|line|outage|app|website))"
        r"(?:\s+(?:is|are|was|were)|'s|'re|\s+has been|\s+have been)\s+"
        r"(?:(?:so|absolutely|really|just|completely|totally|utterly|beyond|truly|frankly|honestly|bloody|such|"
        r"fucking|effing|damn|freaking)\s+)*(?:an?\s+(?:fucking|effing|damn|freaking|bloody|total|complete)\s+"
        r"(?:joke|disgrace|farce|nightmare|shambles|scandal|rip ?off)|"
        + _VERDICT
        + ")"
        + r"\b(?!\s+(?:weather|storm|day|rain|wind|traffic|news|luck))",
        r"\bwhat an? (?:joke|waste|disgrace|shambles|mess|nightmare|farce|rip ?off)\b|\bsuch an? (?:joke|disgrace)\b",
        r"\bwaste of (?:my\s+)?(?:time|money)\b|\bsick (?:and tired |to death )?of\b|\bfed up\b|\bhad (?:it|enough)\b",
        r"\b(?:i'm|i am|im|we're|we are)\s+"
        r"(?:(?:so|really|very|extremely|absolutely|beyond|getting|pretty|fucking|bloody)\s+)*"
        r"(?:angry|furious|livid|fuming|frustrated|mad|upset|annoyed|pissed(?: off)?|unhappy|disgusted|outraged|"
        r"disappointed|exasperated|irate|irritated|done with (?:this|you|northwind|your))\b(?!\s+with my)",
        r"\bworst (?:company|service|provider|experience|customer service|internet|support|isp|ever)\b"
        r"|\bthe worst\b(?!\s+(?:case|part|thing|bit|of it))",
        r"\b(?:third|fourth|fifth|sixth|tenth|umpteenth|\d+(?:st|nd|rd|th)?) time (?:that )?"
        r"(?:i've|i have|i'm|i am|we've|i)\s+"
        r"(?:called|rung|rang|phoned|calling|had to call|tried)\b",
        r"\b(?:on hold|waiting)(?: on the line)? for (?:over\s+|more than\s+)?(?:an hour|hours|ages|forever|"
        r"(?:\d+|two|three|four|five|twenty|thirty|forty|fifty|sixty) (?:hours|minutes))\b",
        r"\bwaiting all (?:day|morning|week)\b",
        r"\bwasted (?:my|the|a|an) (?:whole |entire )?(?:morning|afternoon|evening|day|week|weekend|time|hour|money)\b",
        r"\bwhat kind of (?:company|service|business|outfit)\b|\bfor (?:the love of god|crying out loud)\b",
        r"\bare you (?:kidding|joking|serious)\b|\bkidding me\b",
        _bare(r"seriously|come on|unreal|for god's sake|for fuck's sake|give me a break"),
        r"\b(?:nobody|no one|no-one|noone)\s+(?:ever\s+)?(?:answers|picks up|picked up|answered|"
        r"calls?\s+(?:me\s+)?back|called\s+(?:me\s+)?back|gets back|got back|responds|responded|replies|replied)\b",
        r"\b(?:been|keep|kept) trying to (?:get through|reach|call|contact|get (?:a )?hold of|get in touch with)\b",
        r"\bhow many times do i (?:have|need) to (?:call|ring|phone)\b",
        r"\bwhat(?:'s| is) wrong with (?:you|your|this|northwind)\b",
        r"\b(?:this|it|you|you people|that)(?:'s|\s+is|\s+are|'re)?\s+"
        r"driving me (?:crazy|mad|insane|nuts|up the wall)\b",
        r"\b(?:ruined|wrecked) my\b|\b(?:load|pile|bunch) of (?:rubbish|garbage|nonsense|crap)\b",
    )
    + _cues(
        r"\b(?:can|could)(?:'t|n't| not|not| never)\s+(?:ever\s+)?"
        r"(?:get through|get anyone|(?:reach|get (?:a )?hold of)\s+"
        r"(?:you|anyone|anybody|someone|somebody|a person|your|northwind|customer service))\b",
        r"\byou (?:never|don't ever|can't|cannot|couldn't) (?:fix|do|get|sort) (?:anything|it right|a thing)\b",
        negatable=False,
    ),
}


def _clean(text: str) -> str:
    """Lower-cased words with the punctuation that separates clauses kept, and apostrophes put back."""
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    t = re.sub(r"\s+", " ", re.sub(r"[^a-z0-9'.,;:!?\- ]", " ", t)).strip()
    return _APOSTROPHES.sub(lambda m: _CONTRACTIONS[m.group(0)], t)


def _clause(t: str, start: int, end: int) -> tuple[int, int]:
    """Where the punctuation-delimited clause of `t` around `t[start:end]` begins and ends."""
    left = max(t.rfind(c, 0, start) for c in ".,;:!?")
    rights = [i for i in (t.find(c, end) for c in ".,;:!?") if i >= 0]
    return left + 1, min(rights) if rights else len(t)


def _holds(cue: _Cue, t: str, m: re.Match[str]) -> bool:
    """Whether a cue's match means what it says, given the words around it."""
    if cue.negatable:
        head = t[: m.start()]
        ends = list(_CLAUSE_END.finditer(head))
        window = head[ends[-1].end() :] if ends else head
        if _NEGATION.search(" ".join(window.split()[-4:])):
            return False
    begin, end = _clause(t, m.start(), m.end())
    clause = t[begin:end]
    if cue.irrealis and _IRREALIS.search(clause):
        return False
    if cue.titles and _TITLE.search(clause):
        return False
    if cue.third_party and _THIRD_PARTY.search(t[begin : m.start()]):
        return False
    return not (cue.prevention and _PREVENTION.search(clause))


# "Sue" written with a capital inside a sentence is a person ("addressed to Sue Lawson", "talk to Sue in billing"):
# speech-to-text writes the verb in lower case. Read as another name before the words are lower-cased.
_SUE_NAMED = re.compile(r"(?<=[A-Za-z0-9,;:'\"]\s)Sue\b")


def reading(text: str) -> str | None:
    """The escalation trigger the caller's words carry, if any, most urgent first (no state: words only)."""
    t = _clean(_SUE_NAMED.sub("Susan", text))
    for trigger, cues in CUES.items():
        for cue in cues:
            if any(_holds(cue, t, m) for m in cue.pattern.finditer(t)):
                return trigger
    return None
