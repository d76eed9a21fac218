// swift-tools-version: 6.0
import PackageDescription

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "incidentd",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "incidentd", targets: ["incidentd"]),
        .executable(name: "incidentctl", targets: ["incidentctl"]),
        .executable(name: "incidentbench", targets: ["incidentbench"]),
    ],
    // Exact versions: what CI tested is what ships. Package.resolved is not committed (the build machines' copies of
    // these packages carry other commit ids than GitHub's), so these lines are the only pin. The packages they
    // depend on (swift-atomics, swift-collections, swift-system, swift-asn1, swift-numerics) resolve within the
    // ranges these versions ask for.
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", exact: "2.101.3"),
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", exact: "3.12.3"),
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", exact: "0.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", exact: "0.2.0"),
    ],
    targets: [
        // C: liblmdb through pkg-config, and the few Linux calls Swift cannot reach directly.
        .systemLibrary(name: "CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"])]),
        .target(name: "CShims", cSettings: [.define("_GNU_SOURCE")]),

        // Storage: a Swift face on LMDB that knows nothing of incidents.
        .target(name: "LMDB", dependencies: ["CLMDB"], swiftSettings: strictSettings),

        // A strict, bounded JSON reader and canonical writer shared by every layer.
        .target(name: "StrictJSON", swiftSettings: strictSettings),

        // The gazetteer: canonical cities and every spelling users type, loaded from TOML.
        .target(
            name: "Gazetteer",
            dependencies: [.product(name: "TOMLKit", package: "TOMLKit")],
            swiftSettings: strictSettings
        ),

        // Domain: events, validation, projections. No LMDB, no sockets.
        .target(name: "IncidentDomain", dependencies: ["StrictJSON", "Gazetteer"], swiftSettings: strictSettings),

        // The log: the domain stored in LMDB (keys, hash chain, group commit, queries).
        .target(
            name: "IncidentLog",
            dependencies: [
                "LMDB", "IncidentDomain", "StrictJSON",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),

        // The wire: requests, responses and line framing, shared by daemon, CLI and load generator.
        .target(name: "IncidentProtocol", dependencies: ["StrictJSON"], swiftSettings: strictSettings),

        // Whether a socket's directory is one only root and incidentd's user could put a socket in: the rules by which
        // incidentd chooses where it serves and incidentctl whom it trusts.
        .target(name: "SocketTrust", swiftSettings: strictSettings),

        .executableTarget(
            name: "incidentd",
            dependencies: [
                "IncidentLog", "IncidentProtocol", "IncidentDomain", "StrictJSON", "CShims", "SocketTrust",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "incidentctl",
            dependencies: [
                "IncidentProtocol", "StrictJSON", "IncidentLog", "IncidentDomain", "Gazetteer", "CShims", "SocketTrust",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "incidentbench",
            dependencies: [
                "IncidentProtocol", "StrictJSON", "IncidentLog", "IncidentDomain", "LMDB", "Gazetteer",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings
        ),

        // The tests' own reading and damaging of data.mdb pages, shared by the LMDB and integration tests.
        .target(name: "DataFilePages", path: "Tests/DataFilePages", swiftSettings: strictSettings),

        .testTarget(name: "StrictJSONTests", dependencies: ["StrictJSON"], swiftSettings: strictSettings),
        .testTarget(name: "LMDBTests", dependencies: ["LMDB", "DataFilePages"], swiftSettings: strictSettings),
        .testTarget(name: "GazetteerTests", dependencies: ["Gazetteer"], swiftSettings: strictSettings),
        .testTarget(
            name: "IncidentDomainTests",
            dependencies: ["IncidentDomain", "StrictJSON"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "IncidentLogTests",
            dependencies: ["IncidentLog", "IncidentDomain", "StrictJSON", "LMDB", "Gazetteer"],
            swiftSettings: strictSettings
        ),
        .testTarget(name: "incidentdTests", dependencies: ["incidentd"], swiftSettings: strictSettings),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "incidentd", "incidentctl", "IncidentProtocol", "StrictJSON", "IncidentLog", "IncidentDomain", "CShims",
                "DataFilePages",
            ],
            swiftSettings: strictSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
