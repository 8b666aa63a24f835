import Testing

@testable import CTAAPI

@Suite("Access policy")
struct PolicyTests {
    func principal(_ role: Role, _ groups: Set<String> = ["qa"]) -> Principal {
        Principal(user: "u", role: role, groups: groups, tokenID: "t")
    }

    @Test("the least role of every action, and that higher roles inherit it")
    func table() {
        #expect(Set(Policy.table.keys) == Set(Action.allCases))
        let expected: [Action: Role] = [
            .read: .viewer, .manageOwnTokens: .viewer, .runExecution: .tester, .cancelExecution: .tester,
            .applyDefinition: .tester, .deleteDefinition: .tester, .machineAction: .operator, .manageWebhooks: .operator,
            .manageUsers: .admin, .manageGroups: .admin, .manageEnrollmentTokens: .admin, .manageAnyTokens: .admin,
        ]
        #expect(Policy.table == expected)
        for action in Action.allCases {
            for role in Role.allCases {
                #expect(Policy.roleAllows(role, action) == (role >= expected[action]!), "\(role) \(action)")
            }
        }
    }

    @Test("objects of the user's groups: allowed by role; read-only roles are forbidden, not hidden")
    func ownGroup() {
        #expect(Policy.decide(.read, principal: principal(.viewer), owners: ["qa"]) == .allow)
        #expect(Policy.decide(.runExecution, principal: principal(.viewer), owners: ["qa"]) == .forbidden)
        #expect(Policy.decide(.runExecution, principal: principal(.tester), owners: ["qa", "dev"]) == .allow)
        #expect(Policy.decide(.machineAction, principal: principal(.tester), owners: ["qa"]) == .forbidden)
        #expect(Policy.decide(.machineAction, principal: principal(.operator), owners: ["qa"]) == .allow)
        #expect(Policy.decide(.manageWebhooks, principal: principal(.operator), owners: ["qa"]) == .allow)
    }

    @Test("another group's object is hidden for every role but admin")
    func otherGroup() {
        for role in [Role.viewer, .tester, .operator] {
            for action in [Action.read, .runExecution, .cancelExecution, .machineAction, .applyDefinition] {
                #expect(Policy.decide(action, principal: principal(role), owners: ["dev"]) == .hidden)
            }
        }
        #expect(Policy.decide(.machineAction, principal: principal(.admin, []), owners: ["dev"]) == .allow)
    }

    @Test("objects without owners: everyone reads, only an admin changes")
    func unowned() {
        for role in [Role.viewer, .tester, .operator] {
            #expect(Policy.decide(.read, principal: principal(role), owners: []) == .allow)
            #expect(Policy.decide(.applyDefinition, principal: principal(role), owners: []) == .forbidden)
        }
        #expect(Policy.decide(.applyDefinition, principal: principal(.admin), owners: []) == .allow)
        // A user in no group sees only objects with no owners.
        #expect(Policy.canSee(principal(.operator, []), owners: []))
        #expect(!Policy.canSee(principal(.operator, []), owners: ["qa"]))
    }

    @Test("object-less actions follow the role alone")
    func objectless() {
        #expect(Policy.decide(.manageUsers, principal: principal(.operator)) == .forbidden)
        #expect(Policy.decide(.manageUsers, principal: principal(.admin)) == .allow)
        #expect(Policy.decide(.manageOwnTokens, principal: principal(.viewer)) == .allow)
    }

    @Test("owners a non-admin may give: one or more of their own groups")
    func assigning() {
        #expect(Policy.mayAssign(owners: ["qa"], principal: principal(.tester, ["qa", "dev"])))
        #expect(!Policy.mayAssign(owners: [], principal: principal(.tester)))
        #expect(!Policy.mayAssign(owners: ["qa", "ops"], principal: principal(.tester)))
        #expect(Policy.mayAssign(owners: [], principal: principal(.admin, [])))
    }
}
