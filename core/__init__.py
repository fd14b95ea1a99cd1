"""The words every room shares: the org hierarchy and its codes (`orgcodes`), the city model
(`city`, `gridindex`), the catalogues and their labels (`catalogue`), what people may type
(`freetext`), and the small process-wide rules (`lifecycle`, `passwords`, `sources`).

The core imports no other room of the project; every room may import it (docs/ARCHITECTURE.md).
"""
