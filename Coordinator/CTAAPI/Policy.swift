/// A user's role. Each role may do what the roles below it may: `admin` > `operator` > `tester` > `viewer`.
public enum Role: String, Codable, Sendable, CaseIterable, Comparable {
    case viewer
    case tester
    case `operator`
    case admin

    var rank: Int {
        switch self {
        case .viewer: 0
        case .tester: 1
        case .operator: 2
        case .admin: 3
        }
    }

    public static func < (lhs: Role, rhs: Role) -> Bool { lhs.rank < rhs.rank }
}

/// Who makes a request: a user (through one of its tokens).
public struct Principal: Sendable, Hashable {
    public var user: String
    public var role: Role
    public var groups: Set<String>
    /// The token the request carried.
    public var tokenID: String

    public init(user: String, role: Role, groups: Set<String>, tokenID: String) {
        self.user = user
        self.role = role
        self.groups = groups
        self.tokenID = tokenID
    }
}

/// Something a request does. Each action has one least role (``Policy/table``); actions on an object are also
/// scoped by the object's groups (``Policy/decide(_:principal:owners:)``).
public enum Action: String, Sendable, CaseIterable {
    /// Read executions, results, logs, machines, definitions, groups (scoped: objects in the user's groups).
    case read
    /// Request an execution of a scenario.
    case runExecution
    /// Cancel an execution.
    case cancelExecution
    /// Create or replace a test, suite, configuration or scenario.
    case applyDefinition
    /// Delete a definition.
    case deleteDefinition
    /// Drain or resume a machine.
    case machineAction
    /// Add, remove and read the deliveries of a scenario's webhooks.
    case manageWebhooks
    /// Create, change and delete users.
    case manageUsers
    /// Create, change and delete groups.
    case manageGroups
    /// Create, list and revoke agent enrollment tokens.
    case manageEnrollmentTokens
    /// Create, list and revoke one's own API tokens.
    case manageOwnTokens
    /// List and revoke other users' tokens.
    case manageAnyTokens
}

/// What the policy says about a request on an object.
public enum Decision: Equatable, Sendable {
    case allow
    /// The object is readable but the action is not allowed: 403.
    case forbidden
    /// The object is outside the user's groups: answered as if it did not exist (404), so nothing is revealed.
    case hidden
}

/// Who may do what: the whole access policy of the API in one place.
///
/// Rules (the API contract): a role may do its actions and those of lower roles; `admin` may do everything on every
/// object. Other roles act only on objects "in their groups": an object with owners (a definition's `owners`, a
/// machine's registered `groups`, an execution's scenario's `owners`) is in a user's groups when they share a
/// group. An object without owners is readable by everyone but changed only by an admin. An object outside the
/// user's groups is hidden (404) for every action; a readable object the user may not change is forbidden (403).
public enum Policy {
    /// The least role for each action.
    public static let table: [Action: Role] = [
        .read: .viewer,
        .manageOwnTokens: .viewer,
        .runExecution: .tester,
        .cancelExecution: .tester,
        .applyDefinition: .tester,
        .deleteDefinition: .tester,
        .machineAction: .operator,
        .manageWebhooks: .operator,
        .manageUsers: .admin,
        .manageGroups: .admin,
        .manageEnrollmentTokens: .admin,
        .manageAnyTokens: .admin,
    ]

    /// Whether the role may do the action at all (on some object).
    public static func roleAllows(_ role: Role, _ action: Action) -> Bool {
        guard let least = table[action] else { return false }
        return role >= least
    }

    /// Whether an object with these owners is visible to the principal.
    public static func canSee(_ principal: Principal, owners: [String]) -> Bool {
        principal.role == .admin || owners.isEmpty || !principal.groups.isDisjoint(with: owners)
    }

    /// The decision for `action` on an object with `owners` (empty: no owners).
    public static func decide(_ action: Action, principal: Principal, owners: [String]) -> Decision {
        guard canSee(principal, owners: owners) else { return .hidden }
        guard roleAllows(principal.role, action) else { return .forbidden }
        if action == .read || principal.role == .admin { return .allow }
        // A change: only to objects that belong to one of the user's groups.
        return !owners.isEmpty && !principal.groups.isDisjoint(with: owners) ? .allow : .forbidden
    }

    /// The decision for an action that is not about one object (users, groups, enrollment tokens).
    public static func decide(_ action: Action, principal: Principal) -> Decision {
        roleAllows(principal.role, action) ? .allow : .forbidden
    }

    /// Whether a non-admin may give a definition these owners: at least one, each one of the user's groups.
    public static func mayAssign(owners: [String], principal: Principal) -> Bool {
        principal.role == .admin || (!owners.isEmpty && Set(owners).isSubset(of: principal.groups))
    }
}
