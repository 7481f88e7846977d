// Init script of the Compose stack's MongoDB (official mongo image: the files of
// /docker-entrypoint-initdb.d run once, on an empty data volume, logged in as the
// root user MONGO_INITDB_ROOT_USERNAME). Makes the services' own user of the FHIR
// store: river_store, readWrite on FHIRSTORE_DB_NAME (collections, indexes,
// documents; no user or server administration), password STORE_OWNER_PASSWORD.
// The services' FHIR_STORE_URL logs in as it (authSource: the store's database).
const storeName = process.env.FHIRSTORE_DB_NAME || "fhirstore";
const password = process.env.STORE_OWNER_PASSWORD;
if (!password) {
  throw new Error("STORE_OWNER_PASSWORD is not set: set it in .env");
}
const store = db.getSiblingDB(storeName);
if (store.getUser("river_store") === null) {
  store.createUser({
    user: "river_store",
    pwd: password,
    roles: [{ role: "readWrite", db: storeName }],
  });
  print(`fhir-river: user river_store (readWrite on ${storeName})`);
}
