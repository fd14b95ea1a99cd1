"""The demo ledger's people (人): households of plausible structure in the occupied houses, their
residents with Chinese names, birth dates, GB 11643 ID numbers, phones, registration and tags.

Pure and deterministic: every draw comes from the `random.Random` handed in, and `Identities`
numbers ID numbers and phones from counters, so no two residents share one (a duplicate would be
flagged by the review queue as the same person) without a set of every number issued.

A household is drawn from a **structure** (single elderly, couple with children, three generations,
grandparents with a left-behind grandchild, tenants sharing a flat ...), whose weights mix between a
smaller and a larger set (`mix` 0..1) so that a plan can aim at a number of residents. Care tags
are derived from the household where the word says so (elderly living alone: over 65 and alone;
left-behind child: a grandchild with no parent in the household), the others drawn at the rates
of a Chinese city (disabled ≈ 2 %, low-income ≈ 1.5 %, veteran ≈ 1 % of adults, restricted ≈ 0.05 %).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import accumulate
from operator import mul

from faker.providers.person.en_US import Provider as EnglishNames
from faker.providers.person.zh_CN import Provider as ChineseNames

from core.ledger import RESTRICTED_TAGS, Gender, HouseUse, Registration, Relation, Tag

ELDERLY_ALONE_AGE = 65
CHILD_AGE = 16            # below it, a child (left-behind, no phone of their own)
ADULT_AGE = 18
_SURNAMES = list(ChineseNames.last_names)
_SURNAME_WEIGHTS = list(accumulate(ChineseNames.last_names.values()))
_GIVEN = {Gender.MALE: list(ChineseNames.first_names_male), Gender.FEMALE: list(ChineseNames.first_names_female)}
_FOREIGN_GIVEN = {Gender.MALE: list(EnglishNames.first_names_male),
                  Gender.FEMALE: list(EnglishNames.first_names_female)}
_FOREIGN_SURNAMES = list(EnglishNames.last_names)
# where floating residents' ID numbers were issued (GB/T 2260: other cities of Fujian and beyond)
FLOATING_REGIONS = ("350581", "350521", "350622", "350802", "352201", "360102", "362101", "430102", "431102",
                    "510104", "511102", "410102", "340102", "420102", "450102", "500101", "522101", "441302")
PHONE_PREFIXES = ("130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155",
                  "156", "157", "158", "159", "166", "177", "180", "181", "182", "186", "187", "188", "189",
                  "198", "199")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_PHONE_STEP = 39_916_801    # odd and not a multiple of 5: a permutation of 10**8 numbers


@dataclass
class Resident:
    """One resident as generated: personal fields in clear (the loader seals them)."""
    relation: Relation
    name: str
    gender: Gender
    birth_date: date
    registration: Registration
    id_number: str = ""
    phone: str | None = None
    moved_in: date | None = None
    moved_out: date | None = None
    tags: dict[Tag, date] = field(default_factory=dict)


@dataclass
class Household:
    residents: list[Resident]          # the head first
    structure: str


def id_check_char(first17: str) -> str:
    """The GB 11643 check character of an ID number's first 17 digits."""
    return _ID_CHECK[sum(map(mul, map(int, first17), _ID_WEIGHTS)) % 11]


class Identities:
    """Issues ID numbers and phones, unique by construction: an ID number's 3-digit sequence comes
    from a counter per (region, birth date) (up to 490 people share a region and a birth date) with
    the gender's parity (odd: male); a phone is a counter mapped through a permutation of the
    8-digit numbers, under a prefix."""

    def __init__(self, offset: int) -> None:
        self._sequences: dict[tuple[str, date], int] = {}
        self._phones = 0
        self._documents = 0
        self._offset = offset % 10**8

    def id_number(self, region: str, born: date, gender: Gender) -> str:
        n = self._sequences.get((region, born), 0)
        self._sequences[(region, born)] = n + 1
        start = (born.toordinal() * 37 + int(region)) % 490      # not every first-born 010
        sequence = 2 * ((start + n) % 490) + 10 + (1 if gender is Gender.MALE else 0)
        first17 = f"{region}{born.year:04d}{born.month:02d}{born.day:02d}{sequence:03d}"
        return first17 + id_check_char(first17)

    def document(self, rng: random.Random) -> str:
        """A foreign resident's passport-like document number (two letters, seven digits)."""
        self._documents += 1
        letters = "".join(rng.choice("EGKMPSX") for _ in range(2))
        return f"{letters}{(self._documents * 7_919 + self._offset) % 10**7:07d}"

    def phone(self) -> str:
        count = self._phones
        self._phones += 1
        body = (count * _PHONE_STEP + self._offset) % 10**8      # unique while count < 10**8
        return f"{PHONE_PREFIXES[body % len(PHONE_PREFIXES)]}{body:08d}"


# --- structures ------------------------------------------------------------------------------------
# (name, weight when small, weight when large, uses): each a list of (relation, age range, gender rule)
_M, _F, _ANY, _OPP = "m", "f", "any", "opposite"
STRUCTURES: dict[str, list[tuple[Relation, tuple[int, int], str]]] = {
    "single_elderly": [(Relation.HEAD, (65, 94), _ANY)],
    "elderly_couple": [(Relation.HEAD, (60, 90), _M), (Relation.SPOUSE, (58, 90), _OPP)],
    "single_adult": [(Relation.HEAD, (22, 59), _ANY)],
    "couple": [(Relation.HEAD, (24, 59), _M), (Relation.SPOUSE, (23, 59), _OPP)],
    "couple_child": [(Relation.HEAD, (27, 55), _M), (Relation.SPOUSE, (25, 55), _OPP),
                     (Relation.CHILD, (0, 25), _ANY)],
    "couple_two_children": [(Relation.HEAD, (30, 52), _M), (Relation.SPOUSE, (28, 52), _OPP),
                            (Relation.CHILD, (0, 22), _ANY), (Relation.CHILD, (0, 22), _ANY)],
    "single_parent": [(Relation.HEAD, (28, 55), _ANY), (Relation.CHILD, (0, 20), _ANY)],
    "three_generations": [(Relation.HEAD, (30, 50), _M), (Relation.SPOUSE, (28, 50), _OPP),
                          (Relation.CHILD, (0, 18), _ANY), (Relation.PARENT, (56, 88), _M),
                          (Relation.PARENT, (54, 88), _F)],
    "left_behind": [(Relation.HEAD, (52, 78), _M), (Relation.SPOUSE, (50, 78), _OPP),
                    (Relation.GRANDCHILD, (2, 15), _ANY)],
    "tenant_single": [(Relation.HEAD, (19, 45), _ANY)],
    "tenant_couple": [(Relation.HEAD, (21, 45), _M), (Relation.SPOUSE, (20, 45), _OPP)],
    "tenant_family": [(Relation.HEAD, (26, 48), _M), (Relation.SPOUSE, (24, 48), _OPP),
                      (Relation.CHILD, (0, 16), _ANY)],
    "tenant_shared": [(Relation.HEAD, (20, 40), _ANY), (Relation.TENANT, (19, 40), _ANY),
                      (Relation.TENANT, (19, 40), _ANY)],
}
OWNER_WEIGHTS = {  # structure: (weight in the smaller mix, weight in the larger mix)
    "single_elderly": (18, 8), "elderly_couple": (20, 10), "single_adult": (10, 1), "couple": (14, 1),
    "couple_child": (20, 20), "couple_two_children": (7, 22), "single_parent": (5, 4),
    "three_generations": (4, 30), "left_behind": (2, 4),
}
TENANT_WEIGHTS = {"tenant_single": (40, 10), "tenant_couple": (30, 20), "tenant_family": (18, 45),
                  "tenant_shared": (12, 25)}


def _weights(table: dict[str, tuple[int, int]], mix: float) -> tuple[list[str], list[float]]:
    names = list(table)
    return names, list(accumulate((1 - mix) * small + mix * large for small, large in table.values()))


def _birth(rng: random.Random, today: date, ages: tuple[int, int]) -> date:
    return today - timedelta(days=rng.randint(ages[0] * 365 + 1, ages[1] * 365 + 364))


def _gender(rule: str, head: Gender | None, rng: random.Random) -> Gender:
    if rule == _M:
        return Gender.MALE if rng.random() < 0.93 else Gender.FEMALE   # a wife may head the household
    if rule == _F:
        return Gender.FEMALE
    if rule == _OPP and head is not None:
        return Gender.FEMALE if head is Gender.MALE else Gender.MALE
    return Gender.MALE if rng.random() < 0.51 else Gender.FEMALE


def _given(rng: random.Random, gender: Gender) -> str:
    names = _GIVEN[gender]
    first = rng.choice(names)
    return first if len(first) > 1 or rng.random() < 0.3 else first + rng.choice(names)[0]


def _surname(rng: random.Random) -> str:
    return rng.choices(_SURNAMES, cum_weights=_SURNAME_WEIGHTS)[0]


def _registration(rng: random.Random, use: HouseUse) -> Registration:
    """A household's registration: tenants mostly floating, owners mostly local (≈ 75/23/2 overall)."""
    draw = rng.random()
    if use is HouseUse.RENTED:
        return Registration.FLOATING if draw < 0.77 else Registration.FOREIGN if draw < 0.86 else Registration.LOCAL
    return Registration.LOCAL if draw < 0.89 else Registration.FOREIGN if draw < 0.893 else Registration.FLOATING


class PeopleMaker:
    """Draws households for the occupied houses of one city (see the module)."""

    def __init__(self, rng: random.Random, today: date, mix: float, identities: Identities) -> None:
        self.rng, self.today, self.identities = rng, today, identities
        self.owner = _weights(OWNER_WEIGHTS, mix)
        self.tenant = _weights(TENANT_WEIGHTS, mix)

    def household(self, use: HouseUse, region: str) -> Household:
        """One household for a house of this use; `region` is its district's code (locals' IDs)."""
        rng = self.rng
        names, weights = self.tenant if use is HouseUse.RENTED else self.owner
        structure = rng.choices(names, cum_weights=weights)[0]
        registration = _registration(rng, use)
        moved_in = self.today - timedelta(days=rng.randint(30, 4 * 365 if use is HouseUse.RENTED else 25 * 365))
        residents = self._members(structure, registration)
        self._order_generations(residents)
        for person in residents:
            person.moved_in = max(moved_in, person.birth_date)
            self._identity(person, region)
        self._tags(residents, registration)
        self._moves(residents)
        return Household(residents, structure)

    def _members(self, structure: str, registration: Registration) -> list[Resident]:
        rng = self.rng
        foreign = registration is Registration.FOREIGN
        family = _surname(rng) if not foreign else rng.choice(_FOREIGN_SURNAMES)
        people: list[Resident] = []
        for relation, ages, rule in STRUCTURES[structure]:
            gender = _gender(rule, people[0].gender if people else None, rng)
            own_family = relation in (Relation.HEAD, Relation.CHILD, Relation.GRANDCHILD) or (
                relation is Relation.PARENT and gender is Gender.MALE)
            surname = family if own_family else (_surname(rng) if not foreign else rng.choice(_FOREIGN_SURNAMES))
            name = (f"{rng.choice(_FOREIGN_GIVEN[gender])} {surname}" if foreign
                    else surname + _given(rng, gender))
            people.append(Resident(relation, name, gender, _birth(rng, self.today, ages), registration))
        if structure == "three_generations" and rng.random() < 0.45:
            people.pop()                               # one grandparent only
        if structure in ("couple_child", "left_behind") and rng.random() < 0.25:
            extra = people[-1]
            people.append(Resident(extra.relation, extra.name[:-1] + _given(rng, extra.gender)[-1],
                                   extra.gender, _birth(rng, self.today, (0, 14)), registration))
        return people

    def _order_generations(self, people: list[Resident]) -> None:
        """Make ages plausible: a child at least 20 years younger than the head and spouse, a
        parent at least 20 older, a grandchild at least 40 younger; spouses within 12 years."""
        head = people[0]
        for person in people[1:]:
            gap = (person.birth_date - head.birth_date).days / 365.25
            if person.relation is Relation.SPOUSE and abs(gap) > 12:
                person.birth_date = head.birth_date + timedelta(days=self.rng.randint(-5 * 365, 5 * 365))
            elif person.relation in (Relation.CHILD, Relation.GRANDCHILD):
                least = 20 if person.relation is Relation.CHILD else 40
                youngest_parent = max(p.birth_date for p in people if p.relation in (Relation.HEAD, Relation.SPOUSE))
                floor = youngest_parent + timedelta(days=int(least * 365.25))
                if person.birth_date < floor:
                    person.birth_date = floor + timedelta(days=self.rng.randint(0, 12 * 365))
                person.birth_date = min(person.birth_date, self.today - timedelta(days=30))
            elif person.relation is Relation.PARENT and gap > -20:
                person.birth_date = head.birth_date - timedelta(days=self.rng.randint(21 * 365, 34 * 365))

    def _identity(self, person: Resident, region: str) -> None:
        rng = self.rng
        if person.registration is Registration.FOREIGN:
            person.id_number = self.identities.document(rng)
        else:
            issued = region if person.registration is Registration.LOCAL else rng.choice(FLOATING_REGIONS)
            person.id_number = self.identities.id_number(issued, person.birth_date, person.gender)
        age = self.age(person)
        if age >= ADULT_AGE and (age < 80 or rng.random() < 0.6):
            person.phone = self.identities.phone()

    def contact_name(self) -> str:
        """A shop's or organisation's contact person's name."""
        gender = Gender.MALE if self.rng.random() < 0.5 else Gender.FEMALE
        return _surname(self.rng) + _given(self.rng, gender)

    def age(self, person: Resident) -> int:
        born, today = person.birth_date, self.today
        return today.year - born.year - ((today.month, today.day) < (born.month, born.day))

    def _tags(self, people: list[Resident], registration: Registration) -> None:
        """Care tags from the household (alone and over 65; a grandchild whose parents are not
        in it), the others drawn at their rates; each with the date it has held since."""
        rng = self.rng
        parents_home = any(p.relation is Relation.CHILD and self.age(p) >= ADULT_AGE for p in people)
        low_income = registration is Registration.LOCAL and rng.random() < 0.019
        for person in people:
            age = self.age(person)
            if len(people) == 1 and age >= ELDERLY_ALONE_AGE:
                person.tags[Tag.ELDERLY_ALONE] = max(person.moved_in, _birthday(person.birth_date, ELDERLY_ALONE_AGE))
            if person.relation is Relation.GRANDCHILD and age < CHILD_AGE and not parents_home:
                person.tags[Tag.LEFT_BEHIND_CHILD] = person.moved_in
            if rng.random() < (0.055 if age >= 60 else 0.011):
                person.tags[Tag.DISABLED] = self._since(person)
            if low_income:
                person.tags[Tag.LOW_INCOME] = self._since(person)
            if age >= 25 and rng.random() < (0.022 if person.gender is Gender.MALE else 0.002):
                person.tags[Tag.VETERAN] = self._since(person)
            if ADULT_AGE <= age < 70 and rng.random() < 0.0008:
                person.tags[rng.choice(sorted(RESTRICTED_TAGS))] = self._since(person)

    def _since(self, person: Resident) -> date:
        start = max(person.moved_in or person.birth_date, self.today - timedelta(days=10 * 365))
        return start + timedelta(days=self.rng.randint(0, max((self.today - start).days, 0)))

    def _moves(self, people: list[Resident]) -> None:
        """A few grown children and tenants have moved out (the deletion job's work): ≈ 1 %."""
        for person in people[1:]:
            if self.age(person) >= ADULT_AGE and self.rng.random() < 0.02:
                person.moved_out = self.today - timedelta(days=self.rng.randint(10, 700))
                person.tags.pop(Tag.ELDERLY_ALONE, None)


def _birthday(born: date, years: int) -> date:
    try:
        return born.replace(year=born.year + years)
    except ValueError:                     # 29 February
        return born.replace(year=born.year + years, day=28)
