import CTAMongo
public import Foundation

extension APIStore {
    // MARK: Users

    public func user(_ name: String) async throws -> UserRecord? {
        try await users.findOne(["_id": .string(name)])
    }

    /// Inserts a user; false when the name is taken.
    public func createUser(_ user: UserRecord) async throws -> Bool {
        do {
            _ = try await users.insertOne(user)
            return true
        } catch let error as MongoError where error.code == .duplicateKey {
            return false
        }
    }

    public func replaceUser(_ user: UserRecord) async throws {
        try await users.replaceOne(["_id": .string(user._id)], with: user)
    }

    /// Deletes a user and revokes its tokens; false when there was none.
    public func deleteUser(_ name: String, at now: Date) async throws -> Bool {
        let deleted = try await users.deleteOne(["_id": .string(name)])
        _ = try await tokens.updateMany(["user": .string(name), "revokedAt": .null], .set(["revokedAt": .date(now)]))
        return deleted == 1
    }

    public func usersPage(_ request: PageRequest) async throws -> (items: [UserRecord], next: Cursor?) {
        try await page(users, filter: [:], sortKey: nil, descending: false, request: request) {
            Cursor(key: .text($0._id), id: $0._id)
        }
    }

    public func adminCount() async throws -> Int {
        try await users.count(["role": .string(Role.admin.rawValue)])
    }

    // MARK: Groups

    public func group(_ name: String) async throws -> GroupRecord? {
        try await groups.findOne(["_id": .string(name)])
    }

    public func createGroup(_ group: GroupRecord) async throws -> Bool {
        do {
            _ = try await groups.insertOne(group)
            return true
        } catch let error as MongoError where error.code == .duplicateKey {
            return false
        }
    }

    public func replaceGroup(_ group: GroupRecord) async throws {
        try await groups.replaceOne(["_id": .string(group._id)], with: group)
    }

    public func deleteGroup(_ name: String) async throws -> Bool {
        try await groups.deleteOne(["_id": .string(name)]) == 1
    }

    public func groupsPage(_ request: PageRequest) async throws -> (items: [GroupRecord], next: Cursor?) {
        try await page(groups, filter: [:], sortKey: nil, descending: false, request: request) {
            Cursor(key: .text($0._id), id: $0._id)
        }
    }

    /// How many users name the group.
    public func groupMembers(_ name: String) async throws -> Int {
        try await users.count(["groups": .string(name)])
    }

    // MARK: Tokens

    public func createToken(_ token: TokenRecord) async throws {
        _ = try await tokens.insertOne(token)
    }

    public func token(hash: String) async throws -> TokenRecord? {
        try await tokens.findOne(["hash": .string(hash)])
    }

    public func token(id: String) async throws -> TokenRecord? {
        try await tokens.findOne(["_id": .string(id)])
    }

    public func tokensPage(user: String?, _ request: PageRequest) async throws -> (items: [TokenRecord], next: Cursor?) {
        let filter: BSONDocument = user.map { ["user": .string($0)] } ?? [:]
        return try await page(tokens, filter: filter, sortKey: "createdAt", descending: false, request: request) {
            Cursor(time: $0.createdAt, id: $0._id)
        }
    }

    /// Revokes a token; false when it was already revoked or does not exist.
    public func revokeToken(_ id: String, at now: Date) async throws -> Bool {
        let result = try await tokens.updateOne(["_id": .string(id), "revokedAt": .null], .set(["revokedAt": .date(now)]))
        return result.modifiedCount == 1
    }

    /// Records a use, at most once a minute per token (a write per request would double the cost of reads).
    public func touchToken(_ token: TokenRecord, at now: Date) async throws {
        if let last = token.lastUsedAt, now.timeIntervalSince(last) < 60 { return }
        _ = try await tokens.updateOne(["_id": .string(token._id)], .set(["lastUsedAt": .date(now)]))
    }

    // MARK: Enrollment tokens

    public func createEnrollmentToken(_ token: EnrollmentTokenRecord) async throws {
        _ = try await enrollmentTokens.insertOne(token)
    }

    public func enrollmentToken(hash: String) async throws -> EnrollmentTokenRecord? {
        try await enrollmentTokens.findOne(["hash": .string(hash)])
    }

    public func enrollmentTokensPage(_ request: PageRequest) async throws
        -> (items: [EnrollmentTokenRecord], next: Cursor?)
    {
        try await page(enrollmentTokens, filter: [:], sortKey: "createdAt", descending: false, request: request) {
            Cursor(time: $0.createdAt, id: $0._id)
        }
    }

    public func revokeEnrollmentToken(_ id: String, at now: Date) async throws -> Bool {
        let result = try await enrollmentTokens.updateOne(
            ["_id": .string(id), "revokedAt": .null], .set(["revokedAt": .date(now)]))
        return result.modifiedCount == 1
    }

    public func enrollmentTokenExists(_ id: String) async throws -> Bool {
        try await enrollmentTokens.count(["_id": .string(id)]) > 0
    }

    public func touchEnrollmentToken(_ token: EnrollmentTokenRecord, at now: Date) async throws {
        if let last = token.lastUsedAt, now.timeIntervalSince(last) < 60 { return }
        _ = try await enrollmentTokens.updateOne(["_id": .string(token._id)], .set(["lastUsedAt": .date(now)]))
    }

    // MARK: First admin

    /// Creates the first admin and its token when no admin exists, once across every coordinator: the first to
    /// claim `firstAdmin` in the database does it. Returns the token's text for the one that created it.
    public func bootstrapAdmin(holder: String, at now: Date) async throws -> String? {
        guard try await adminCount() == 0 else { return nil }
        guard try await claim("firstAdmin", by: holder) else { return nil }
        var name = "admin"
        if try await user(name) != nil { name = "admin-\(Secrets.newID().prefix(6).lowercased())" }
        _ = try await createUser(UserRecord(name: name, role: .admin, groups: [], at: now))
        let secret = Secrets.newUserToken()
        try await createToken(
            TokenRecord(
                id: Secrets.newID(), hash: Secrets.tokenHash(secret), user: name, name: "first admin token", createdAt: now,
                expiresAt: nil))
        return secret
    }
}
