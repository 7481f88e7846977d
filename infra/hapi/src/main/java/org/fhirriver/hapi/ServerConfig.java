package org.fhirriver.hapi;

import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.jpa.api.IDaoRegistry;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.config.util.ResourceCountCacheUtil;
import ca.uhn.fhir.jpa.dao.FulltextSearchSvcImpl;
import ca.uhn.fhir.jpa.dao.IFulltextSearchSvc;
import ca.uhn.fhir.jpa.dao.search.HSearchSortHelperImpl;
import ca.uhn.fhir.jpa.dao.search.IHSearchSortHelper;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.config.SubscriptionSettings;
import ca.uhn.fhir.jpa.provider.DaoRegistryResourceSupportedSvc;
import ca.uhn.fhir.jpa.provider.IJpaSystemProvider;
import ca.uhn.fhir.jpa.provider.JpaCapabilityStatementProvider;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.jpa.search.IStaleSearchDeletingSvc;
import ca.uhn.fhir.jpa.search.StaleSearchDeletingSvcImpl;
import ca.uhn.fhir.jpa.util.ResourceCountCache;
import ca.uhn.fhir.narrative2.NullNarrativeGenerator;
import ca.uhn.fhir.rest.api.EncodingEnum;
import ca.uhn.fhir.rest.api.IResourceSupportedSvc;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.provider.ResourceProviderFactory;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import jakarta.persistence.EntityManagerFactory;
import java.util.Optional;
import javax.sql.DataSource;
import org.hibernate.cfg.AvailableSettings;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.boot.autoconfigure.orm.jpa.JpaProperties;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Primary;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;

/**
 * The beans the JPA server needs beside HAPI's own configurations, as the
 * hapi-fhir-jpaserver-starter defines them (StarterJpaConfig, FhirServerConfigCommon).
 *
 * The storage settings FHIR River relies on (README, "Loading into a FHIR server"):
 * client-assigned ids of any form (PUT Patient/123), references to resources that are not
 * there yet accepted (a Condition may arrive before its Patient), deletes allowed whatever
 * references the resource, and no reuse of cached search results (counts are current).
 */
@Configuration
public class ServerConfig {

    @Value("${hapi.enforce-referential-integrity-on-write:false}")
    private boolean enforceReferentialIntegrityOnWrite;

    @Value("${hapi.auto-create-placeholder-reference-targets:false}")
    private boolean autoCreatePlaceholders;

    @Value("${hapi.mass-ingestion-mode:false}")
    private boolean massIngestionMode;

    @Value("${hapi.expunge-enabled:false}")
    private boolean expungeEnabled;

    @Value("${hapi.default-page-size:20}")
    private int defaultPageSize;

    @Value("${hapi.max-page-size:1000}")
    private int maxPageSize;

    @Bean
    public JpaStorageSettings jpaStorageSettings() {
        JpaStorageSettings settings = new JpaStorageSettings();
        settings.setResourceClientIdStrategy(JpaStorageSettings.ClientIdStrategyEnum.ANY);
        settings.setEnforceReferentialIntegrityOnWrite(enforceReferentialIntegrityOnWrite);
        settings.setEnforceReferentialIntegrityOnDelete(false);
        settings.setAutoCreatePlaceholderReferenceTargets(autoCreatePlaceholders);
        settings.setReuseCachedSearchResultsForMillis(null);
        settings.setAllowMultipleDelete(true);
        settings.setMassIngestionMode(massIngestionMode);
        // $expunge: the tests empty the local server with it; off unless asked.
        settings.setExpungeEnabled(expungeEnabled);
        settings.setDeleteExpungeEnabled(expungeEnabled);
        return settings;
    }

    @Bean
    public PartitionSettings partitionSettings() {
        return new PartitionSettings();
    }

    @Bean
    public SubscriptionSettings subscriptionSettings() {
        return new SubscriptionSettings();
    }

    @Bean
    public IFulltextSearchSvc fullTextSearchSvc() {
        return new FulltextSearchSvcImpl();
    }

    @Bean
    public IStaleSearchDeletingSvc staleSearchDeletingSvc() {
        return new StaleSearchDeletingSvcImpl();
    }

    @Bean
    public IHSearchSortHelper hSearchSortHelper(ISearchParamRegistry searchParamRegistry) {
        return new HSearchSortHelperImpl(searchParamRegistry);
    }

    @Bean
    public DatabaseBackedPagingProvider databaseBackedPagingProvider() {
        DatabaseBackedPagingProvider provider = new DatabaseBackedPagingProvider();
        provider.setDefaultPageSize(defaultPageSize);
        provider.setMaximumPageSize(maxPageSize);
        return provider;
    }

    @Bean
    public IResourceSupportedSvc resourceSupportedSvc(IDaoRegistry daoRegistry) {
        return new DaoRegistryResourceSupportedSvc(daoRegistry);
    }

    @Bean(name = "myResourceCountsCache")
    public ResourceCountCache resourceCountsCache(IFhirSystemDao<?, ?> systemDao) {
        return ResourceCountCacheUtil.newResourceCountCache(systemDao);
    }

    @Primary
    @Bean
    public LocalContainerEntityManagerFactoryBean entityManagerFactory(
            JpaProperties jpaProperties,
            DataSource dataSource,
            ConfigurableListableBeanFactory beanFactory,
            ca.uhn.fhir.context.FhirContext fhirContext,
            JpaStorageSettings storageSettings) {
        LocalContainerEntityManagerFactoryBean factory =
                HapiEntityManagerFactoryUtil.newEntityManagerFactory(beanFactory, fhirContext, storageSettings);
        var props = jpaProperties.getProperties();
        props.putIfAbsent(AvailableSettings.SCANNER, "org.hibernate.boot.archive.scan.internal.DisabledScanner");
        props.putIfAbsent(
                AvailableSettings.IMPLICIT_NAMING_STRATEGY,
                "org.springframework.boot.orm.jpa.hibernate.SpringImplicitNamingStrategy");
        props.putIfAbsent(
                AvailableSettings.PHYSICAL_NAMING_STRATEGY,
                "org.hibernate.boot.model.naming.CamelCaseToUnderscoresNamingStrategy");
        props.putIfAbsent(AvailableSettings.HBM2DDL_AUTO, "update");
        props.putIfAbsent(AvailableSettings.STATEMENT_BATCH_SIZE, "50");
        props.putIfAbsent(AvailableSettings.ORDER_INSERTS, "true");
        props.putIfAbsent(AvailableSettings.USE_QUERY_CACHE, "false");
        props.putIfAbsent(AvailableSettings.USE_SECOND_LEVEL_CACHE, "false");
        props.putIfAbsent(AvailableSettings.USE_STRUCTURED_CACHE, "false");
        props.putIfAbsent(AvailableSettings.USE_MINIMAL_PUTS, "false");
        props.putIfAbsent("hibernate.search.enabled", "false");
        factory.setPersistenceUnitName("HAPI_PU");
        factory.setJpaPropertyMap(props);
        factory.setDataSource(dataSource);
        return factory;
    }

    @Primary
    @Bean
    public JpaTransactionManager transactionManager(EntityManagerFactory entityManagerFactory) {
        JpaTransactionManager manager = new JpaTransactionManager();
        manager.setEntityManagerFactory(entityManagerFactory);
        return manager;
    }

    @Bean
    public RestfulServer restfulServer(
            IFhirSystemDao<?, ?> systemDao,
            ResourceProviderFactory resourceProviderFactory,
            IJpaSystemProvider systemProvider,
            JpaStorageSettings storageSettings,
            ISearchParamRegistry searchParamRegistry,
            IValidationSupport validationSupport,
            DatabaseBackedPagingProvider pagingProvider) {
        RestfulServer server = new RestfulServer(systemDao.getContext());
        systemDao.getContext().setNarrativeGenerator(new NullNarrativeGenerator());
        server.registerProviders(resourceProviderFactory.createProviders());
        server.registerProvider(systemProvider);
        JpaCapabilityStatementProvider capabilities = new JpaCapabilityStatementProvider(
                server, systemDao, storageSettings, searchParamRegistry, validationSupport);
        capabilities.setImplementationDescription("FHIR River's local HAPI FHIR R4 server");
        server.setServerConformanceProvider(capabilities);
        server.setDefaultResponseEncoding(EncodingEnum.JSON);
        server.setPagingProvider(pagingProvider);
        return server;
    }
}
