module vmimport.test/target/cdi

go 1.26.0

require kubevirt.io/containerized-data-importer v1.64.0
