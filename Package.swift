// swift-tools-version:6.1
import PackageDescription

/// `CTA_PACKAGE_CORE_ONLY=1` leaves out the HTTP side (API, live feed, the `cta` client and their tests and
/// dependencies): the release test run uses it to check the C interop of the broker, database and agent code under
/// the optimiser without building Hummingbird and BoringSSL a second time. `cta-coordinator` then has no API.
let coreOnly = Context.environment["CTA_PACKAGE_CORE_ONLY"] == "1"

/// Dependencies of the HTTP side only; none in a core-only build.
func http(_ dependencies: [Target.Dependency]) -> [Target.Dependency] { coreOnly ? [] : dependencies }

let upcoming: [SwiftSetting] = [
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let httpPackages: [Package.Dependency] = [
    .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
    .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
    .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.0"),
    .package(url: "https://github.com/apple/swift-http-types.git", from: "1.0.0"),
]

let package = Package(
    name: "cta",
    platforms: [.macOS(.v14)],
    products: (coreOnly ? [] : [.executable(name: "cta", targets: ["cta"])]) + [
        .executable(name: "cta-agent", targets: ["cta-agent"]),
        .executable(name: "cta-bench", targets: ["cta-bench"]),
        .executable(name: "cta-coordinator", targets: ["cta-coordinator"]),
        .library(name: "CTACore", targets: ["CTACore"]),
        .library(name: "CTABroker", targets: ["CTABroker"]),
        .library(name: "CTAMongo", targets: ["CTAMongo"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ] + (coreOnly ? [] : httpPackages),
    targets: [
        // MARK: Common — shared by agent, coordinator and gateway.
        .systemLibrary(
            name: "CRabbitMQ",
            path: "Common/CRabbitMQ",
            pkgConfig: "librabbitmq",
            providers: [.apt(["librabbitmq-dev"])]
        ),
        .target(
            name: "CTACore",
            path: "Common/CTACore",
            swiftSettings: upcoming
        ),
        .target(
            name: "CTAYAML",
            dependencies: [.product(name: "Yams", package: "Yams")],
            path: "Common/CTAYAML",
            swiftSettings: upcoming
        ),
        .target(
            name: "CTADefinitions",
            dependencies: ["CTACore", "CTAYAML"],
            path: "Common/CTADefinitions",
            swiftSettings: upcoming
        ),
        .target(
            name: "CTABroker",
            dependencies: [
                "CRabbitMQ",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Common/CTABroker",
            swiftSettings: upcoming
        ),

        .target(
            name: "CTAMessaging",
            dependencies: [
                "CTACore",
                "CTABroker",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Common/CTAMessaging",
            swiftSettings: upcoming
        ),

        // MARK: Agent
        .target(
            name: "CTAAgentCore",
            dependencies: ["CTACore"],
            path: "Agent/CTAAgentCore",
            swiftSettings: upcoming
        ),
        .target(
            name: "CTAAgent",
            dependencies: [
                "CTAAgentCore",
                "CTABroker",
                "CTACore",
                "CTAMessaging",
                "CTAYAML",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Agent/CTAAgent",
            swiftSettings: upcoming
        ),
        .executableTarget(
            name: "cta-agent",
            dependencies: [
                "CTAAgent",
                "CTABroker",
                "CTACore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ] + http(["CTAAgentGateway"]),
            path: "Agent/cta-agent",
            swiftSettings: upcoming
        ),

        // MARK: Coordinator
        .systemLibrary(
            name: "CMongoC",
            path: "Coordinator/CMongoC",
            pkgConfig: "libmongoc-1.0",
            providers: [.apt(["libmongoc-dev", "libbson-dev"])]
        ),
        .target(
            name: "CTAMongo",
            dependencies: [
                "CMongoC",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Coordinator/CTAMongo",
            swiftSettings: upcoming
        ),
        .target(
            name: "CTACoordinator",
            dependencies: [
                "CTACore",
                "CTABroker",
                "CTADefinitions",
                "CTAMessaging",
                "CTAMongo",
                "CTAYAML",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Coordinator/CTACoordinator",
            swiftSettings: upcoming
        ),
        .executableTarget(
            name: "cta-coordinator",
            dependencies: [
                "CTACoordinator",
                "CTABroker",
                "CTACore",
                "CTADefinitions",
                "CTAMongo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ] + http(["CTAAPI", "CTALive"]),
            path: "Coordinator/cta-coordinator",
            swiftSettings: upcoming
        ),


        // MARK: Tools
        .target(
            name: "CBaseline",
            dependencies: ["CRabbitMQ", "CMongoC"],
            path: "Tools/CBaseline"
        ),
        .executableTarget(
            name: "cta-bench",
            dependencies: [
                "CTABroker",
                "CTACoordinator",
                "CTACore",
                "CTADefinitions",
                "CTAMessaging",
                "CTAMongo",
                "CBaseline",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ] + http([
                "CTAAPI", "CTALive", "CTAAgent", "CTAAgentGateway",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
            path: "Tools/cta-bench",
            // `cta-bench api` and `cta-bench gateway` measure the HTTP side.
            exclude: coreOnly ? ["APIBench.swift", "GatewayBench.swift"] : [],
            swiftSettings: upcoming
        ),

        // MARK: Tests
        .testTarget(name: "CTACoreTests", dependencies: ["CTACore"], path: "Tests/CTACoreTests", swiftSettings: upcoming),
        .testTarget(name: "CTAYAMLTests", dependencies: ["CTAYAML"], path: "Tests/CTAYAMLTests", swiftSettings: upcoming),
        .testTarget(name: "CTABrokerTests", dependencies: ["CTABroker"], path: "Tests/CTABrokerTests", swiftSettings: upcoming),
        .testTarget(name: "CTAAgentCoreTests", dependencies: ["CTAAgentCore"], path: "Tests/CTAAgentCoreTests", swiftSettings: upcoming),
        .testTarget(name: "CTAAgentTests", dependencies: ["CTAAgent", "CTACore", "CTAMessaging"], path: "Tests/CTAAgentTests", swiftSettings: upcoming),
        .testTarget(name: "CTAMongoTests", dependencies: ["CTAMongo"], path: "Tests/CTAMongoTests", swiftSettings: upcoming),
        .testTarget(
            name: "CTACoordinatorTests", dependencies: ["CTACoordinator", "CTACore", "CTADefinitions"], path: "Tests/CTACoordinatorTests",
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "CTAIntegrationTests",
            dependencies: [
                "CTABroker", "CTAMongo", "CTACore", "CTAAgent", "CTACoordinator", "CTADefinitions",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ] + http([
                "CTAAPI", "CTAAgentGateway", "CTAClient", "CTAGateway", "CTALive", "CTAMessaging",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]),
            path: "Tests/CTAIntegrationTests",
            // The end-to-end tests of the HTTP side.
            exclude: coreOnly
                ? [
                    "APITests.swift", "APIClient.swift", "AttachmentStoreTests.swift", "AttachmentUploadContract.swift",
                    "CLIEndToEndTests.swift", "GatewayEndToEndTests.swift", "GatewayTests.swift", "LiveFeedEndToEndTests.swift",
                ]
                : [],
            swiftSettings: upcoming
        ),
    ],
    swiftLanguageModes: [.v6]
)

// MARK: The HTTP side: API, live feed, the `cta` client (left out of a core-only build)

if !coreOnly {
    package.products += [.executable(name: "cta-gateway", targets: ["cta-gateway"])]
    package.targets += [
        .target(
            name: "CTAAgentGateway",
            dependencies: [
                "CTAAgent",
                "CTABroker",
                "CTAClient",
                "CTACore",
                "CTAMessaging",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            path: "Agent/CTAAgentGateway",
            swiftSettings: upcoming
        ),
        .target(
            name: "CTAGateway",
            dependencies: [
                "CTAAPI",
                "CTABroker",
                "CTACore",
                "CTAMessaging",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Gateway/CTAGateway",
            swiftSettings: upcoming
        ),
        .executableTarget(
            name: "cta-gateway",
            dependencies: [
                "CTAAPI", "CTABroker", "CTACoordinator", "CTAGateway", "CTAMongo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            path: "Gateway/cta-gateway",
            swiftSettings: upcoming
        ),
        .target(
            name: "CTALive",
            dependencies: [
                "CTACoordinator",
                "CTACore",
                "CTADefinitions",
                "CTAMongo",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Coordinator/CTALive",
            swiftSettings: upcoming
        ),
        .target(
            name: "CTAAPI",
            dependencies: [
                "CTACoordinator",
                "CTALive",
                "CTACore",
                "CTADefinitions",
                "CTAMongo",
                "CTABroker",
                "CTAMessaging",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Coordinator/CTAAPI",
            swiftSettings: upcoming
        ),
        .target(
            name: "CTAClient",
            dependencies: [
                "CTACore",
                "CTADefinitions",
                "CTAYAML",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            path: "Client/CTAClient",
            swiftSettings: upcoming
        ),
        .executableTarget(
            name: "cta",
            dependencies: [
                "CTAClient",
                "CTACore",
                "CTADefinitions",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Client/cta",
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "CTAClientTests",
            dependencies: [
                "CTAClient", "CTACore", "CTADefinitions", "CTAYAML",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
            ],
            path: "Tests/CTAClientTests", swiftSettings: upcoming
        ),
        .testTarget(
            name: "CTALiveTests",
            dependencies: [
                "CTALive", "CTACoordinator", "CTACore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
            ],
            path: "Tests/CTALiveTests",
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "CTAAPITests",
            dependencies: [
                "CTAAPI", "CTABroker", "CTACoordinator", "CTACore", "CTADefinitions", "CTAMongo",
                .product(name: "Hummingbird", package: "hummingbird"), .product(name: "Logging", package: "swift-log"),
            ], path: "Tests/CTAAPITests",
            swiftSettings: upcoming
        ),
    ]
}
