module vmimport.test/node-images

go 1.26.0
