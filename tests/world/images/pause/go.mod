module vmimport.test/images/pause

go 1.26.0
