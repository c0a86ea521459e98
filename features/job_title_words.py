"""The job-title normaliser's rules, as tables a reader can check word by word.

:mod:`features.job_titles` reads a title as a sequence of words (lower case, accents dropped,
see its docstring) and looks each word, or each phrase of up to four words, up here:

* :data:`ABBREVIATIONS`: a short form → the words it stands for (``vp`` → ``vice president``,
  ``sdr`` → ``sales development representative``). Expanded before anything else.
* :data:`PHRASES`: several words that mean something together and something else apart
  (``vice president`` is a VP, not a president; ``product owner`` is not an owner;
  ``accounts payable`` is finance, not sales). The longest phrase wins.
* :data:`RANK_WORDS` and :data:`DEPARTMENT_WORDS`: single words, in English, German, French,
  Spanish, Portuguese, Dutch and Italian. A word may name a rank, a department or both
  (``accountant`` is an individual in finance).
* :data:`NEUTRAL_WORDS`: words known to say nothing about rank or department (regions,
  seniority modifiers such as *senior* or *principal*, connectives). Listing them keeps the
  fuzzy matcher from "correcting" them into something else (``France`` is not ``finance``).
* :data:`COMPOUND_ENDINGS`: German and Dutch compounds are split before their ending
  (``Vertriebsleiter`` → ``vertrieb`` + ``leiter``).

Conventions (the same as the labelled set's, ``tests/fixtures/job_titles/README.md``): rank is
read from the words, not the org chart (every *manager* is a manager); *Head of* is a director;
*Lead* is a manager only when the title has no other rank word (``Marketing Lead`` vs
``Lead Developer``); founders, owners, presidents, managing directors and general managers are
``c_level`` in ``executive``.
"""

from __future__ import annotations

from typing import NamedTuple

RANKS: tuple[str, ...] = ("individual", "manager", "director", "vp", "c_level")
UNKNOWN = "unknown"
# "executive" is general management; "other" is a recognised occupation outside the list
DEPARTMENTS: tuple[str, ...] = (
    "sales",
    "marketing",
    "customer_success",
    "product",
    "engineering",
    "it",
    "operations",
    "finance",
    "hr",
    "legal",
    "executive",
    "other",
)


class Meaning(NamedTuple):
    """What a word or phrase says about a title."""

    rank: str | None = None
    department: str | None = None
    # "lead": a manager only when nothing else in the title names a rank
    weak_rank: bool = False
    # "assistant to …", "executive assistant": the person assists the rank named, so is not it
    assists: bool = False


ABBREVIATIONS: dict[str, str] = {
    "vp": "vice president",
    "svp": "senior vice president",
    "evp": "executive vice president",
    "avp": "assistant vice president",
    "rvp": "regional vice president",
    "gvp": "group vice president",
    "vicepresident": "vice president",
    "vicepresidente": "vice president",
    "vicepresidenta": "vice president",
    "dir": "director",
    "mgr": "manager",
    "mngr": "manager",
    "sr": "senior",
    "snr": "senior",
    "jr": "junior",
    "exec": "executive",
    "acct": "account",
    "mktg": "marketing",
    "mkt": "marketing",
    "ops": "operations",
    "revops": "revenue operations",
    "salesops": "sales operations",
    "bizdev": "business development",
    "biz": "business",
    "sdr": "sales development representative",
    "bdr": "business development representative",
    "ae": "account executive",
    "am": "account manager",
    "kam": "key account manager",
    "csm": "customer success manager",
    "pm": "product manager",
    "pmm": "product marketing manager",
    "hrbp": "human resources business partner",
    "rep": "representative",
    "dev": "developer",
    "eng": "engineer",
    "engr": "engineer",
    "admin": "administration",
    "asst": "assistant",
    "ea": "executive assistant",
    "coord": "coordinator",
    "spec": "specialist",
    "gm": "general manager",
    "md": "managing director",
    "pr": "public relations",
    "cofounder": "co founder",
    "teamlead": "team lead",
    "teamleader": "team lead",
    "teamleiter": "team lead",
    "teamleiterin": "team lead",
    "teamleider": "team lead",
}

PHRASES: dict[str, Meaning] = {
    "vice president": Meaning("vp"),
    "vice presidente": Meaning("vp"),
    "team lead": Meaning("manager"),
    "head of": Meaning("director"),
    "chief executive": Meaning("c_level", "executive"),
    "managing director": Meaning("c_level", "executive"),
    "managing partner": Meaning("c_level", "executive"),
    "general manager": Meaning("c_level", "executive"),
    "gerente general": Meaning("c_level", "executive"),
    "director general": Meaning("c_level", "executive"),
    "directeur general": Meaning("c_level", "executive"),
    "directora general": Meaning("c_level", "executive"),
    "direttore generale": Meaning("c_level", "executive"),
    "diretor geral": Meaning("c_level", "executive"),
    "algemeen directeur": Meaning("c_level", "executive"),
    "amministratore delegato": Meaning("c_level", "executive"),
    "board member": Meaning("c_level", "executive"),
    "co founder": Meaning("c_level", "executive"),
    "account executive": Meaning("individual", "sales"),
    "business development": Meaning(None, "sales"),
    "business developer": Meaning("individual", "sales"),
    "product owner": Meaning("individual", "product"),
    "product marketing": Meaning(None, "marketing"),
    "scrum master": Meaning("individual", "engineering"),
    "accounts payable": Meaning(None, "finance"),
    "accounts receivable": Meaning(None, "finance"),
    "investor relations": Meaning(None, "finance"),
    "public relations": Meaning(None, "marketing"),
    "human resources": Meaning(None, "hr"),
    "learning and development": Meaning(None, "hr"),
    "information technology": Meaning(None, "it"),
    "help desk": Meaning(None, "it"),
    "service desk": Meaning(None, "it"),
    "supply chain": Meaning(None, "operations"),
    "assistant to": Meaning("individual", assists=True),
    "executive assistant": Meaning("individual", "executive", assists=True),
    "personal assistant": Meaning("individual", "executive", assists=True),
    "assistant de direction": Meaning("individual", "executive", assists=True),
    "assistante de direction": Meaning("individual", "executive", assists=True),
    "asistente de direccion": Meaning("individual", "executive", assists=True),
}

# fmt: off
RANK_WORDS: dict[str, tuple[str, ...]] = {
    "c_level": (
        "chief", "ceo", "cfo", "cto", "cio", "cmo", "coo", "cro", "cpo", "chro", "ciso", "clo",
        "cso", "cdo", "cco", "cxo", "founder", "cofounder", "owner", "president", "chairman",
        "chairwoman", "board", "geschaftsfuhrer", "geschaeftsfuehrer", "inhaber", "vorstand",
        "pdg", "dg", "fondateur", "fondatrice", "proprietaire", "gerant", "fundador", "dueno",
        "propietario", "presidente", "socio", "eigenaar", "oprichter", "titolare", "fondatore",
    ),
    "director": (
        "director", "directora", "directeur", "directrice", "diretor", "direttore", "direttrice",
        "direktor", "head", "leiter", "hoofd", "drh", "dsi", "daf",
    ),
    "manager": (
        "manager", "supervisor", "responsable", "responsabile", "gerente", "jefe", "jefa", "chef",
        "teamleitung",
    ),
    "individual": (
        "specialist", "analyst", "engineer", "developer", "programmer", "associate", "coordinator",
        "representative", "consultant", "administrator", "assistant", "accountant", "bookkeeper",
        "clerk", "recruiter", "designer", "writer", "copywriter", "technician", "officer", "agent",
        "executive", "intern", "trainee", "apprentice", "employee", "generalist", "partner",
        "marketer", "marketeer", "planner", "buyer", "scientist", "architect", "counsel",
        "paralegal", "lawyer", "attorney", "teacher", "professor", "nurse", "freelancer",
        "contractor", "advisor", "adviser", "auditor", "controller", "treasurer", "salesperson",
        "salesman", "saleswoman", "seller",
        # German
        "mitarbeiter", "sachbearbeiter", "referent", "entwickler", "berater", "einkaufer",
        "verkaufer", "werkstudent", "praktikant", "assistent", "kaufmann", "buchhalter",
        # French
        "ingenieur", "comptable", "charge", "juriste", "stagiaire", "technicien", "commercial",
        "developpeur", "analyste", "vendeur", "acheteur", "conseiller",
        # Spanish / Portuguese
        "ejecutivo", "analista", "ingeniero", "desarrollador", "contador", "contable",
        "coordinador", "vendedor", "abogado", "asistente", "tecnico", "engenheiro",
        "desenvolvedor", "coordenador", "assistente", "advogado", "consultor", "comprador",
        # Dutch
        "medewerker", "ontwikkelaar", "adviseur", "verkoper", "inkoper",
        # Italian
        "ingegnere", "impiegato", "commerciale", "addetto", "sviluppatore", "consulente",
    ),
}

DEPARTMENT_WORDS: dict[str, tuple[str, ...]] = {
    "sales": (
        "cro", "sales", "sale", "selling", "account", "accounts", "partnerships", "partnership",
        "channel", "alliances", "revenue", "presales", "salesperson", "salesman", "saleswoman",
        "seller", "vertrieb", "verkauf", "verkaufer", "innendienst", "aussendienst", "ventes",
        "vente", "commercial", "affaires", "vendeur", "ventas", "comercial", "cuentas", "vendedor",
        "vendas", "verkoop", "verkoper", "vendite", "commerciale",
    ),
    "marketing": (
        "cmo", "marketing", "marketer", "marketeer", "growth", "demand", "content", "seo", "sem",
        "social", "brand", "branding", "communications", "communication", "comms", "events",
        "event", "copywriter", "copywriting", "advertising", "campaigns", "campaign", "media",
        "mercadotecnia", "comunicacion", "comunicacao", "comunicazione", "kommunikation",
    ),
    "customer_success": (
        "customer", "customers", "client", "clients", "support", "onboarding", "kundenservice",
        "kundendienst", "kundenbetreuung", "klantenservice", "suporte", "soporte", "cliente",
        "clientes", "clientele",
    ),
    "product": (
        "cpo", "product", "produkt", "produit", "producto", "produto", "prodotto", "ux", "ui",
        "designer", "design",
    ),
    "engineering": (
        "cto", "cdo", "engineering", "engineer", "software", "developer", "development",
        "programmer", "devops", "sre", "qa", "data", "scientist", "ml", "ai", "frontend",
        "backend", "fullstack", "ios", "android", "web", "mobile", "rd", "tech", "technology",
        "scrum", "entwicklung", "entwickler", "ingenieur", "logiciel", "developpeur", "ingeniero",
        "desarrollador", "desarrollo", "engenheiro", "desenvolvedor", "ontwikkelaar",
        "ontwikkeling", "ingegnere", "sviluppatore", "reliability", "learning",
    ),
    "it": (
        "it", "ti", "informatique", "informatica", "informatik", "information", "systems",
        "system", "sysadmin", "network", "networks", "infrastructure", "security", "cybersecurity",
        "helpdesk", "database", "dba", "administrator", "cio", "ciso", "dsi", "sistemas",
    ),
    "operations": (
        "operations", "operation", "operating", "operaciones", "operacoes", "operazioni",
        "logistics", "logistik", "logistica", "logistique", "procurement", "purchasing",
        "purchase", "buyer", "einkauf", "einkaufer", "achats", "achat", "acheteur", "compras",
        "comprador", "inkoop", "inkoper", "acquisti", "facilities", "facility", "office",
        "project", "projects", "projet", "proyecto", "projeto", "progetto", "projekt", "program",
        "programme", "pmo", "administration", "administrative", "administrativo", "amministrativo",
        "administratif", "plant", "warehouse", "production", "manufacturing", "fulfillment", "coo",
    ),
    "finance": (
        "finance", "financial", "finances", "financier", "finanzen", "finanzas", "financeiro",
        "finanziario", "financieel", "financiero", "accounting", "accountant", "bookkeeper",
        "bookkeeping", "buchhaltung", "buchhalter", "comptable", "comptabilite", "contador",
        "contable", "contabilidad", "fpa", "treasury", "treasurer", "tax", "audit", "auditor",
        "controlling", "controller", "billing", "cfo", "daf", "finanz",
    ),
    "hr": (
        "hr", "rh", "humanos", "humaines", "humanas", "personnel", "personal", "personalwesen",
        "people", "talent", "recruiter", "recruiting", "recruitment", "chro", "drh", "personeel",
    ),
    "legal": (
        "legal", "counsel", "lawyer", "attorney", "paralegal", "compliance", "juriste",
        "juridique", "abogado", "advogado", "avvocato", "rechtsanwalt", "justiziar", "jurist",
        "juridico",
    ),
    "executive": (
        "ceo", "founder", "cofounder", "owner", "president", "chairman", "chairwoman", "board",
        "geschaftsfuhrer", "geschaeftsfuehrer", "inhaber", "vorstand", "pdg", "dg", "fondateur",
        "fondatrice", "proprietaire", "gerant", "fundador", "dueno", "propietario", "presidente",
        "eigenaar", "oprichter", "titolare", "fondatore", "socio",
    ),
    "other": (
        "consultant", "consulente", "consultor", "berater", "teacher", "professor", "nurse",
        "doctor", "physician", "student", "phd", "retired", "unemployed", "freelancer",
        "freelance", "volunteer", "researcher",
    ),
}

NEUTRAL_WORDS: frozenset[str] = frozenset({
    "of", "and", "to", "the", "for", "in", "department", "general", "vice", "success", "resources",
    "business", "de", "senior", "junior", "principal", "staff", "deputy", "co", "global",
    "regional", "region", "national", "local", "worldwide", "emea", "apac", "amer", "americas",
    "america", "north", "south", "east", "west", "latam", "dach", "nordics", "benelux", "uk",
    "uki", "us", "usa", "eu", "europe", "france", "germany", "spain", "netherlands", "mexico",
    "brazil", "enterprise", "mid", "market", "smb", "strategic", "key", "field", "inside",
    "inbound", "at", "on", "des", "du", "la", "le", "les", "y", "e", "del", "di", "da", "do",
    "dos", "und", "en", "van", "het", "der", "den", "m", "w", "d", "f", "ii", "iii", "iv", "i",
    "group", "team", "dept", "division", "unit", "ufficio", "bereich", "terrain", "strategy",
    "culture", "full", "stack", "digital", "technical", "experience", "member", "new", "gen",
    "generation", "automation", "services", "service", "machine", "management", "corporate",
    "acquisition", "recursos", "ressources", "outbound", "italy", "site", "central", "voor",
    "international", "abteilung", "relations",
})
# fmt: on

# German and Dutch compounds end in a rank word: "Vertriebsleiter", "Verkoopmanager"
COMPOUND_ENDINGS: tuple[str, ...] = (
    "sachbearbeiter",
    "mitarbeiter",
    "medewerker",
    "ontwikkelaar",
    "entwickler",
    "referent",
    "manager",
    "berater",
    "leiter",
    "leider",
    "fuhrer",
    "assistent",
)
