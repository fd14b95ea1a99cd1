"""What a SenML unit measures: RFC 8428 section 12.1's units registry (and the units RFC 8798 added
to it), symbol -> the quantity our readings call it. A record whose resolved name is exactly a
registered sensor's takes its quantity from here (RFC 8428 5.1.1: `{"n": "urn:dev:ow:…", "u": "Cel"}`
is a temperature; 5.1.3 reports %RH, lat, lon and %EL under one name)."""
from __future__ import annotations

QUANTITY_OF_UNIT: dict[str, str] = {
    # RFC 8428, 12.1 (SI base and derived units, and the sensor-specific ones)
    "m": "distance", "kg": "mass", "g": "mass", "s": "duration", "A": "current", "K": "temperature",
    "cd": "luminous_intensity", "mol": "amount", "Hz": "frequency", "rad": "angle", "sr": "solid_angle",
    "N": "force", "Pa": "pressure", "J": "energy", "W": "power", "C": "charge", "V": "voltage",
    "F": "capacitance", "Ohm": "resistance", "S": "conductance", "Wb": "magnetic_flux",
    "T": "magnetic_flux_density", "H": "inductance", "Cel": "temperature", "lm": "luminous_flux",
    "lx": "illuminance", "Bq": "radioactivity", "Gy": "absorbed_dose", "Sv": "dose_equivalent",
    "kat": "catalytic_activity", "m2": "area", "m3": "volume", "l": "volume", "m/s": "speed",
    "m/s2": "acceleration", "m3/s": "flow", "l/s": "flow", "W/m2": "irradiance", "cd/m2": "luminance",
    "bit": "data", "bit/s": "data_rate", "lat": "latitude", "lon": "longitude", "pH": "ph",
    "dB": "level", "dBW": "power_level", "Bspl": "sound_pressure_level", "count": "count", "/": "ratio",
    "%": "ratio", "%RH": "humidity", "%EL": "battery_level", "EL": "battery_time", "1/s": "rate",
    "1/min": "rate", "beat/min": "heart_rate", "beats": "heart_beats", "S/m": "conductivity",
    # RFC 8798, 3 (added to the registry)
    "B": "data", "VA": "apparent_power", "VAs": "apparent_energy", "var": "reactive_power",
    "vars": "reactive_energy", "J/m": "energy_per_distance", "kg/m3": "density", "deg": "angle",
    # RFC 8798, 4 (secondary units our own gateways send)
    "kWh": "energy", "Wh": "energy", "kW": "power", "hPa": "pressure", "ppm": "concentration",
    "ug/m3": "concentration",
}
